"""Find the ``imagefunnel`` commands a Markdown document shows, and parse them against the CLI.

A document shows commands in two ways. **Recorded** commands are meant to be run as written: every
line of a fenced code block, and in the benchmarks an inline code span that follows ``Command:`` or
writes a results file (``--write``). They must parse completely: the subcommands and options must
exist, the values must validate and required arguments must be there. **Mentions** are the other
inline code spans that start with ``imagefunnel`` (``imagefunnel bench routing`` runs ...): they
must name a real command, and any option they give must exist and validate, but they may leave out
required arguments, and a last option may be named without its value.

Parsing builds the Click command from ``imagefunnel.cli.app`` and calls ``make_context`` on each
level, which parses and converts every parameter without invoking any command. A ``--scenario``
must then name a built-in scenario (or a YAML file) and a ``--use-case`` one of the use cases.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import typer

try:  # Typer 0.28 ships its own copy of Click, and its commands are built from that copy
    from typer import _click as click
except ImportError:  # older Typer builds on Click itself
    import click  # type: ignore[no-redef]

PROGRAMS = ("imagefunnel", ".venv/bin/imagefunnel")
_SHELL_OPERATORS = {"&&", "||", "|", ";", "&", "(", ")"}
_REDIRECTIONS = {">", ">>", "<", "2>", "&>"}
_FENCE = re.compile(r"^(```|~~~)")
_INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_NOT_A_PROGRAM = "<not a shell command>"


_SHELL_FENCES = {"", "bash", "sh", "shell", "console", "zsh"}


@dataclass(frozen=True)
class DocCommand:
    """One ``imagefunnel`` invocation found in a document."""

    source: str
    line: int
    argv: tuple[str, ...]  # the arguments after the program name
    recorded: bool
    env: tuple[tuple[str, str], ...] = ()  # exported earlier in the document, or set before the program

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def __str__(self) -> str:
        shown = self.argv[1:] if self.argv[:1] == (_NOT_A_PROGRAM,) else ("imagefunnel", *self.argv)
        return f"{self.where}: {shlex.join(shown)}"


def commands_in(path: Path, *, source: str, inline: bool) -> list[DocCommand]:
    """Every command in ``path``'s shell code blocks, and with ``inline`` in its inline code spans.

    The code blocks are read as one shell session: a variable exported in one holds for the commands
    after it.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[DocCommand] = []
    env: dict[str, str] = {}
    prose: list[str] = []
    fence: str | None = None
    pending = ""
    pending_line = 0
    for number, line in enumerate(lines, start=1):
        opening = _FENCE.match(line.strip())
        prose.append("" if opening or fence is not None else line)
        if opening:
            fence = line.strip()[3:].strip().lower() if fence is None else None
            if fence is None and pending:
                raise ValueError(f"{source}:{pending_line}: a code block ends inside a quotation")
            continue
        if fence not in _SHELL_FENCES:
            continue
        if not pending:
            pending_line = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        try:
            found += _shell_commands(pending + line, source=source, line=pending_line, env=env, recorded=True)
        except ValueError:  # a quotation that goes on over the next line
            pending += line + "\n"
            continue
        pending = ""
    if inline:
        found += _inline_commands("\n".join(prose), source=source)
    return found


def _segments(text: str) -> list[list[str]]:
    """``text``'s simple commands, split at shell operators, without redirections and comments."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token in _SHELL_OPERATORS:
            segments.append([])
        elif token in _REDIRECTIONS:
            skip_next = True
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def _shell_commands(
    text: str, *, source: str, line: int, env: dict[str, str], recorded: bool
) -> list[DocCommand]:
    found = []
    for segment in _segments(text):
        if segment[0] == "export":
            env.update(arg.split("=", 1) for arg in segment[1:] if _ENV_ASSIGNMENT.match(arg))  # type: ignore[misc]
            continue
        local = dict(env)
        while segment and _ENV_ASSIGNMENT.match(segment[0]):
            name, _, value = segment[0].partition("=")
            local[name] = value
            segment = segment[1:]
        if segment and segment[0] in PROGRAMS:
            argv = tuple(segment[1:])
            found.append(DocCommand(source, line, argv, recorded=recorded, env=tuple(sorted(local.items()))))
        elif segment and segment[0] in top_level_commands():
            # "imagefunnel bench routing | bench scoring" pipes into a program that does not exist.
            found.append(DocCommand(source, line, (_NOT_A_PROGRAM, *segment), recorded=True))
    return found


def _inline_commands(prose: str, *, source: str) -> list[DocCommand]:
    found = []
    for match in _INLINE.finditer(prose):
        span = " ".join(match.group(1).split())
        if span.partition(" ")[0] not in PROGRAMS:
            continue
        before = prose[: match.start()]
        recorded = before.rstrip().endswith("Command:") or "--write" in span.split()
        line = before.count("\n") + 1
        found += _shell_commands(span, source=source, line=line, env={}, recorded=recorded)
    return found


@functools.cache
def cli() -> typer.core.TyperCommand | typer.core.TyperGroup:
    from imagefunnel.cli.app import app

    return typer.main.get_command(app)  # type: ignore[return-value]


def top_level_commands() -> frozenset[str]:
    return frozenset(getattr(cli(), "commands", {}))


def parse_problem(command: DocCommand) -> str | None:
    """Why ``command`` does not parse against the CLI as it is, or None when it does."""
    argv = list(command.argv)
    if argv and argv[0] == _NOT_A_PROGRAM:
        return f"{shlex.join(argv[1:])!r} follows a shell operator but is not a program"
    # Parse in the environment the document gives the command, and only that one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEFUNNEL_")} | dict(command.env)
    with mock.patch.dict(os.environ, env, clear=True):
        return _parse(command, argv)


def _parse(command: DocCommand, argv: list[str]) -> str | None:
    cmd = cli()
    parent = None
    name = "imagefunnel"
    try:
        while True:
            ctx = cmd.make_context(name, argv, parent=parent)
            if not hasattr(cmd, "commands"):  # a command, not a group of them
                return _value_problem(ctx.params)
            rest = [*ctx._protected_args, *ctx.args]
            if not rest:
                return None if not command.recorded else f"{ctx.command_path} needs a subcommand"
            sub_name, sub, argv = cmd.resolve_command(ctx, rest)
            assert sub is not None and sub_name is not None
            cmd, parent, name = sub, ctx, sub_name
    except (typer.Exit, getattr(click.exceptions, "Exit", typer.Exit)) as exit_:  # --help ends it early
        return None if exit_.exit_code == 0 else f"exits {exit_.exit_code}"
    except click.exceptions.NoArgsIsHelpError:
        return None if not command.recorded else "a group shown without its subcommand"
    except click.exceptions.BadOptionUsage as exc:  # "`imagefunnel cutout --providers` reads ..."
        named_only = not command.recorded and command.argv[-1:] and command.argv[-1].startswith("-")
        return None if named_only and "requires an argument" in exc.format_message() else exc.format_message()
    except click.exceptions.MissingParameter as exc:
        return None if not command.recorded else exc.format_message()
    except click.exceptions.UsageError as exc:  # unknown command or option, bad value, extra argument
        return exc.format_message()


def _value_problem(params: dict[str, object]) -> str | None:
    """Values the CLI takes as plain strings but that must name something that exists."""
    from imagefunnel.market.scenario import builtin_scenarios
    from imagefunnel.spec.models import UseCase

    scenario = params.get("scenario")
    if (
        isinstance(scenario, str)
        and not scenario.endswith((".yaml", ".yml"))
        and scenario not in builtin_scenarios()
    ):
        return f"no built-in scenario {scenario!r} (there are {', '.join(builtin_scenarios())})"
    use_case = params.get("use_case")
    if isinstance(use_case, str) and use_case not in {u.value for u in UseCase}:
        return f"no use case {use_case!r}"
    return None
