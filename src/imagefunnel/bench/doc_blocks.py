"""Benchmark figures live in marked blocks of a Markdown file (``docs/benchmarks.md``): one writer for all.

A run replaces its own block and nothing else, so prose around the blocks survives regeneration.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["write_marked_block"]


def write_marked_block(path: Path, *, start: str, end: str, block: str, heading: str | None) -> None:
    """Put ``block`` (from its ``start`` marker to its ``end`` marker) where the last one stood in
    ``path``. A first block goes at the end of the ``heading`` section, which is added at the end of
    the file when missing (``None``: the block goes at the end of the file, carrying its own heading)."""
    block = block.rstrip("\n") + "\n"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    elif heading is not None and f"\n{heading}\n" in text:
        # At the end of that section, before the next section of another benchmark.
        head, _, tail = text.partition(f"\n{heading}\n")
        nxt = tail.find("\n## ")
        body, rest = (tail, "") if nxt < 0 else (tail[: nxt + 1], tail[nxt + 1 :])
        text = f"{head}\n{heading}\n{body.rstrip()}\n\n{block}" + (f"\n{rest}" if rest else "")
    else:
        title = "" if heading is None else f"{heading}\n\n"
        text = text.rstrip("\n") + f"\n\n{title}{block}"
    path.write_text(text, encoding="utf-8")
