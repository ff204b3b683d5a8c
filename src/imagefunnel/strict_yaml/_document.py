"""Parsing: YAML text → plain data and positions, every limit checked event by event."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from imagefunnel.errors import ImageFileError, ImageTooLarge, SpecError
from imagefunnel.imagefile import read_image_file

Loc = tuple[str | int, ...]
Position = tuple[int, int]
MAX_BYTES = 1_000_000
MAX_DEPTH = 20
MAX_SCALAR_CHARS = 10_000
MAX_INT_DIGITS = 30
# Keys, values and containers together: a config holds hundreds; this bounds the work on any file.
MAX_NODES = 50_000

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_STR = "tag:yaml.org,2002:str"
# What plain scalars may resolve to; anything else the resolver knows (``<<``, ``=``) stays text.
_CORE = frozenset({_INT, _FLOAT, _BOOL, _STR, "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp"})


# libyaml's parser when installed (several times faster); its events are the same classes.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlInputError(SpecError):
    """A YAML input refused by the strict loader or its model; ``line``/``column`` are 1-based."""

    def __init__(
        self,
        problem: str,
        *,
        source: str,
        position: Position | None = None,
        field: str | None = None,
    ) -> None:
        where = f"{source}:{position[0]}:{position[1]}" if position is not None else source
        super().__init__(f"{where}: {problem}", field=field, line=position[0] if position else None)
        self.source = source
        self.problem = problem
        self.column = position[1] if position is not None else None


@dataclass(frozen=True)
class YamlDocument:
    """Plain data, plus where each key (or list item) was written: key path → (line, column)."""

    data: object
    positions: Mapping[Loc, Position]
    # Paths of scalars written as booleans, and as text (quoted or plain strings).
    booleans: frozenset[Loc] = frozenset()
    texts: frozenset[Loc] = frozenset()

    def __iter__(self) -> Iterator[object]:
        # ``data, positions = load_yaml(...)`` reads naturally.
        return iter((self.data, self.positions))


def _mark(mark: Any) -> Position:
    return (int(mark.line) + 1, int(mark.column) + 1)


def _preview(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _position_of(text: str, index: int) -> Position:
    line = text.count("\n", 0, index) + 1
    return (line, index - (text.rfind("\n", 0, index) + 1) + 1)


def _decode(raw: bytes, *, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Position only: the bytes themselves may be anything and are not echoed back.
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlInputError("is not UTF-8 text", source=source, position=(line, column)) from None


@dataclass
class _Frame:
    container: dict[str, object] | list[object]
    path: Loc
    key: str | None = None


class _Builder:
    """Turns parser events into plain data, checking every limit as each event arrives."""

    def __init__(
        self, *, source: str, max_depth: int, max_scalar_chars: int, max_int_digits: int, max_nodes: int
    ) -> None:
        self.source = source
        self.max_nodes = max_nodes
        self.nodes = 0
        self.max_depth = max_depth
        self.max_scalar_chars = max_scalar_chars
        self.max_int_digits = max_int_digits
        self.stack: list[_Frame] = []
        self.root: object = None
        self.documents = 0
        self.positions: dict[Loc, Position] = {}
        self.booleans: set[Loc] = set()
        self.texts: set[Loc] = set()
        # Only its resolver and scalar constructors are used, never its composer.
        self.loader = yaml.SafeLoader("")

    def refuse(self, problem: str, mark: Any) -> YamlInputError:
        return YamlInputError(problem, source=self.source, position=_mark(mark))

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.refuse("holds more than one YAML document (a second '---')", event.start_mark)
        elif isinstance(event, yaml.AliasEvent):
            raise self.refuse(
                f"YAML aliases (*{event.anchor}) are not accepted: write the value out", event.start_mark
            )
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            self.stack.pop()
        elif isinstance(event, yaml.NodeEvent):
            self._node(event)

    def _node(self, event: yaml.NodeEvent) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise self.refuse(f"holds more than {self.max_nodes} keys and values", event.start_mark)
        if event.anchor is not None:
            raise self.refuse(
                f"YAML anchors (&{event.anchor}) are not accepted: write the value out", event.start_mark
            )
        tag = getattr(event, "tag", None)
        if tag is not None:
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            raise self.refuse(f"explicit YAML tags ({shown}) are not accepted", event.start_mark)
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.container, dict) and top.key is None:
            self._key(top, event)
            return
        path: Loc = ()
        if top is not None and isinstance(top.container, list):
            path = (*top.path, len(top.container))
            self.positions[path] = _mark(event.start_mark)
        elif top is not None and top.key is not None:
            path = (*top.path, top.key)
        value: object
        if isinstance(event, yaml.ScalarEvent):
            value = self._scalar(event, path)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            if len(self.stack) >= self.max_depth:
                raise self.refuse(f"nests deeper than {self.max_depth} levels", event.start_mark)
            value = {} if isinstance(event, yaml.MappingStartEvent) else []
        else:  # pragma: no cover - the parser emits no other node events
            raise self.refuse(f"unexpected YAML event {type(event).__name__}", event.start_mark)
        self._attach(top, value)
        if isinstance(value, dict | list):
            self.stack.append(_Frame(value, path))

    def _key(self, frame: _Frame, event: yaml.NodeEvent) -> None:
        if not isinstance(event, yaml.ScalarEvent):
            raise self.refuse("mapping keys must be plain names, not lists or mappings", event.start_mark)
        if len(event.value) > self.max_scalar_chars:
            raise self.refuse(f"a key is longer than {self.max_scalar_chars} characters", event.start_mark)
        path = (*frame.path, event.value)
        if event.value in frame.container:
            first = self.positions.get(path)
            at = f" (first at {first[0]}:{first[1]})" if first else ""
            raise self.refuse(f"{event.value}: duplicate key{at}", event.start_mark)
        frame.key = event.value
        self.positions[path] = _mark(event.start_mark)

    def _attach(self, top: _Frame | None, value: object) -> None:
        if top is None:
            self.root = value
        elif isinstance(top.container, list):
            top.container.append(value)
        elif top.key is not None:
            top.container[top.key] = value
            top.key = None

    def _scalar(self, event: yaml.ScalarEvent, path: Loc) -> object:
        text = event.value
        if len(text) > self.max_scalar_chars:
            raise self.refuse(f"a value is longer than {self.max_scalar_chars} characters", event.start_mark)
        resolve = cast("Callable[..., str]", self.loader.resolve)
        tag = resolve(yaml.ScalarNode, text, event.implicit)
        if tag not in _CORE:
            tag = _STR
        if tag in (_INT, _FLOAT):
            self._check_number(text, tag, event)
        if tag == _BOOL:
            self.booleans.add(path)
        elif tag == _STR:
            self.texts.add(path)
            return text
        node = yaml.ScalarNode(tag, text, None, None, event.style)
        try:
            return self.loader.yaml_constructors[tag](self.loader, node)
        except (ValueError, yaml.YAMLError):
            # The resolver matches by pattern only: 2024-13-45 looks like a date and is none.
            kind = tag.rsplit(":", 1)[-1]
            raise self.refuse(f"{_preview(text)} is not a valid {kind}", event.start_mark) from None

    def _check_number(self, text: str, tag: str, event: yaml.ScalarEvent) -> None:
        digits = sum(ch.isdigit() for ch in text)
        if tag == _INT and digits > self.max_int_digits:
            raise self.refuse(f"an integer has more than {self.max_int_digits} digits", event.start_mark)
        bare = text.lstrip("+-").replace("_", "")
        # YAML 1.1 reads these as octal and base 60; nobody writing a config means that.
        if ":" in bare or (tag == _INT and len(bare) > 1 and bare[0] == "0" and bare[1].isdigit()):
            raise self.refuse(
                f"the number {_preview(text)} is ambiguous in YAML: quote it or drop the zeros",
                event.start_mark,
            )


def load_yaml(
    text: str | bytes,
    *,
    source: str,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_scalar_chars: int = MAX_SCALAR_CHARS,
    max_int_digits: int = MAX_INT_DIGITS,
    max_nodes: int = MAX_NODES,
) -> YamlDocument:
    """Parse one YAML document strictly; raises :class:`YamlInputError` naming line and column."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise YamlInputError(f"is larger than {max_bytes} bytes", source=source)
    if isinstance(text, bytes):
        text = _decode(text, source=source)
    limits = {
        "max_depth": max_depth,
        "max_scalar_chars": max_scalar_chars,
        "max_int_digits": max_int_digits,
        "max_nodes": max_nodes,
    }
    try:
        return _build(text, _FAST_LOADER, source=source, **limits)
    except yaml.YAMLError as fast:
        error = fast
    if _FAST_LOADER is not yaml.SafeLoader:
        # libyaml words errors tersely ("did not find expected ','"), differently between versions,
        # and reads ahead before our depth check sees an event: the pure parser has the last word.
        try:
            return _build(text, yaml.SafeLoader, source=source, **limits)
        except yaml.YAMLError as pure:
            error = pure
    raise _parse_error(text, error, source=source) from None


def _build(text: str, loader: type[yaml.SafeLoader], *, source: str, **limits: int) -> YamlDocument:
    builder = _Builder(source=source, **limits)
    for event in yaml.parse(text, Loader=loader):
        builder.feed(event)
    return YamlDocument(
        builder.root, builder.positions, frozenset(builder.booleans), frozenset(builder.texts)
    )


def _parse_error(text: str, exc: yaml.YAMLError, *, source: str) -> YamlInputError:
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"holds a character YAML does not allow (#x{exc.character:04x})"
        return YamlInputError(problem, source=source, position=_position_of(text, exc.position))
    if isinstance(exc, yaml.MarkedYAMLError):
        return _syntax_error(exc, source=source)
    return YamlInputError(f"is not valid YAML ({type(exc).__name__})", source=source)


def _syntax_error(exc: yaml.MarkedYAMLError, *, source: str) -> YamlInputError:
    mark = exc.problem_mark or exc.context_mark
    problem = _one_line(exc.problem or exc.context or "is not valid YAML")
    if exc.context and exc.problem and exc.context_mark is not None:
        line, column = _mark(exc.context_mark)
        problem += f" ({_one_line(exc.context)} at {line}:{column})"
    return YamlInputError(problem, source=source, position=_mark(mark) if mark is not None else None)


def read_yaml_file(path: Path, *, what: str, max_bytes: int = MAX_BYTES) -> YamlDocument:
    """Read at most ``max_bytes`` (+1, to notice more) of ``path`` and parse it strictly."""
    # The same guarded read as for images: a FIFO or device named as a spec is refused, never opened.
    try:
        raw = read_image_file(path, max_bytes=max_bytes)
    except ImageTooLarge as exc:
        raise YamlInputError(f"is larger than {max_bytes} bytes", source=str(path)) from exc
    except ImageFileError as exc:
        reason = str(exc).removeprefix("cannot read: ")
        raise YamlInputError(f"cannot read {what}: {reason}", source=str(path)) from exc
    return load_yaml(raw, source=str(path), max_bytes=max_bytes)
