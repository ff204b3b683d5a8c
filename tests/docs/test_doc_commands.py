"""Every ``imagefunnel`` command the README and the docs show parses against the CLI as it is.

A renamed option, a removed benchmark or a value the CLI now refuses fails here instead of leaving a
stale document. Nothing is run: each command is only parsed (see ``doc_commands``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from doc_commands import DocCommand, commands_in, parse_problem

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BENCHMARKS = DOCS / "benchmarks.md"
README = ROOT / "README.md"


def _all_commands() -> list[DocCommand]:
    return [
        *commands_in(BENCHMARKS, source="docs/benchmarks.md", inline=True),
        *commands_in(README, source="README.md", inline=False),
        *commands_in(DOCS / "architecture.md", source="docs/architecture.md", inline=True),
        *commands_in(DOCS / "providers.md", source="docs/providers.md", inline=True),
    ]


COMMANDS = _all_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses(command: DocCommand) -> None:
    problem = parse_problem(command)
    assert problem is None, f"{command}\n  does not parse: {problem}"


def test_every_generated_block_records_the_command_that_wrote_it() -> None:
    """Each ``<!-- bench... -->`` block holds one recorded ``--write docs/benchmarks.md`` command."""
    text = BENCHMARKS.read_text(encoding="utf-8")
    blocks = re.findall(
        r"<!-- (bench[^>]*?)(?::start)? -->(.*?)<!-- (?:/bench[^>]*|bench[^>]*:end) -->", text, re.S
    )
    assert len(blocks) >= 10
    recorded = [c for c in COMMANDS if c.source == "docs/benchmarks.md" and c.recorded]
    for name, body in blocks:
        start_line = text[: text.index(body)].count("\n") + 1
        end_line = start_line + body.count("\n")
        inside = [c for c in recorded if start_line <= c.line <= end_line]
        writes = [c for c in inside if "--write" in c.argv and c.argv[0] == "bench"]
        assert writes, f"block {name!r} records no `imagefunnel bench ... --write` command"


def test_finds_the_commands_it_should() -> None:
    """The extractor sees fenced blocks, continued lines, inline spans and the commands after `&&`."""
    argvs = {c.argv for c in COMMANDS}
    assert ("bench", "routing", "--write", "docs/benchmarks.md") in argvs
    assert ("eval", "out/") in argvs  # after `&&` on the README's devset line
    assert (
        "worker",
        "--providers",
        "prod.yaml",
        "--jobs",
        "4",
        "--shared-state",
        "redis://redis:6379/0",
    ) in argvs
    assert ("--help",) in argvs  # an inline span broken over two lines
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize(
    ("markdown", "problem"),
    [
        ("```bash\nimagefunnel bench routing --scenarios calm\n```\n", "No such option"),
        ("```bash\nimagefunnel bench routing --jobs 0\n```\n", "--jobs"),
        ("```bash\nimagefunnel bench routes\n```\n", "No such command"),
        ("```bash\nimagefunnel run\n```\n", "Missing argument"),
        ("```bash\nimagefunnel bench\n```\n", "without its subcommand"),
        ("```bash\nimagefunnel bench routing | bench scoring\n```\n", "not a program"),
        ("Command: `imagefunnel bench load --jobs many`\n", "--jobs"),
        ("Run `imagefunnel bench crash --kill 3` first.\n", "No such option"),
        ("```bash\nimagefunnel cutout photo.jpg --providers\n```\n", "requires an argument"),
        (
            "Command: `imagefunnel bench routing --scenario seed --write docs/benchmarks.md`\n",
            "no built-in scenario",
        ),
        ("```bash\nimagefunnel eval devset --use-case portrait\n```\n", "no use case"),
        ("```bash\nimagefunnel dimensions --use-case portrait\n```\n", "--use-case"),
    ],
)
def test_a_stale_command_is_caught(tmp_path: Path, markdown: str, problem: str) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(markdown, encoding="utf-8")
    *_, command = commands_in(doc, source="doc.md", inline=True)
    found = parse_problem(command)
    assert found is not None and problem in found, found


@pytest.mark.parametrize(
    "markdown",
    [
        "`imagefunnel run` kills nothing\n",  # a mention may leave out required arguments
        "`imagefunnel bench` has subcommands\n",
        "`imagefunnel cutout --providers` reads a providers file\n",
        "```bash\nimagefunnel --help\n```\n",
        "```bash\nX=1 .venv/bin/imagefunnel bench routing --scenario calm > out.txt &\n```\n",
        "```bash\nexport IMAGEFUNNEL_STORE=sqlite:///q.db\n```\n\n```sh\nimagefunnel worker --until-done\n```\n",
        "```text\nquote vs actual: not a command\n```\n\n`imagefunnel devset d && imagefunnel eval d --json`\n",
    ],
)
def test_a_valid_command_or_mention_passes(tmp_path: Path, markdown: str) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(markdown, encoding="utf-8")
    *_, command = commands_in(doc, source="doc.md", inline=True)
    assert parse_problem(command) is None
