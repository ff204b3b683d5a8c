"""Strict, bounded YAML for every file a user hands us (job specs, scenarios, providers files).

The document is built straight from the parser's event stream, iteratively, so no step recurses or
expands anything: limits are checked on each event before it costs memory. Refused, each with
``SOURCE:LINE:COL: problem`` on one line:

* syntax errors (the parser's problem and where, never its multi-line snippet);
* text that is not UTF-8, files over the byte limit, more than one document;
* anchors and aliases, all of them (``&a``/``*a`` is how a few lines expand into gigabytes, and a
  config file does not need them);
* explicit tags (``!!binary``, ``!!python/...``, ``!custom``): values get the core schema's types only;
* nesting deeper than ``max_depth``, scalars longer than ``max_scalar_chars``, integers with more
  than ``max_int_digits`` digits, and integers YAML 1.1 reads surprisingly (``010`` is octal 8,
  ``1:30`` is 90), and more than ``max_nodes`` keys and values in all;
* duplicate keys (YAML parsers keep the last one silently) and keys that are not plain scalars.

Mapping keys are kept as the text written (``1:`` and ``on:`` are the keys ``"1"`` and ``"on"``).
:func:`validate` then checks the data against a pydantic model, maps its errors back onto lines
(unknown fields first, with a did-you-mean), and refuses booleans or quoted text that pydantic's lax
mode would turn into numbers (``deliver: true`` is not 1).
"""

from __future__ import annotations

from imagefunnel.strict_yaml._document import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_NODES,
    MAX_SCALAR_CHARS,
    Loc,
    Position,
    YamlDocument,
    YamlInputError,
    load_yaml,
    read_yaml_file,
)
from imagefunnel.strict_yaml._models import dotted, validate

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_NODES",
    "MAX_SCALAR_CHARS",
    "Loc",
    "Position",
    "YamlDocument",
    "YamlInputError",
    "dotted",
    "load_yaml",
    "read_yaml_file",
    "validate",
]
