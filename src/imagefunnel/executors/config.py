"""What an executor is chosen by: a small URL, and the picklable recipe of a job's scorer.

``local://threads`` (the default) scores on a thread pool in this process; ``local://processes``
scores in a pool of worker processes (``?workers=2&start=spawn|forkserver``); ``ray`` scores on a
local Ray instance and ``ray://head:10001`` on a Ray cluster (``?workers=N`` scoring actors). A
process or Ray worker cannot receive the job's :class:`Scorer` (it holds loaded models), so it
receives a :class:`ScorerConfig` instead and builds its own scorer from it, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from imagefunnel.errors import ExecutorError, ImageError, ScoringWorkerError, SpecError
from imagefunnel.imaging import decode_image
from imagefunnel.scoring import Scorer
from imagefunnel.scoring.jobcontext import context_from, read_reference, read_source
from imagefunnel.spec import CreativeBrief, JobSpec, Rule

__all__ = ["ExecutorChoice", "ExecutorError", "ScorerConfig", "ScoringWorkerError", "parse_executor_url"]

Kind = Literal["threads", "processes", "ray"]
StartMethod = Literal["spawn", "forkserver"]
DEFAULT_EXECUTOR_URL = "local://threads"


@dataclass(frozen=True, slots=True)
class ExecutorChoice:
    kind: Kind = "threads"
    workers: int | None = None  # None: one per core, at most 4 (Ray: one per CPU of the cluster)
    start_method: StartMethod = "spawn"
    # Ray only: the cluster's Ray Client address (``ray://head:10001``); None starts a local instance.
    address: str | None = None

    @property
    def needs_config(self) -> bool:
        """Whether the workers score in other processes, from a :class:`ScorerConfig`."""
        return self.kind != "threads"


def parse_executor_url(url: str) -> ExecutorChoice:
    """``local://threads``, ``local://processes?workers=N&start=spawn``, ``ray[?workers=N]`` or
    ``ray://host:port[?workers=N]``; ExecutorError says why not."""
    text = url.strip()
    if text == "ray" or text.startswith(("ray?", "ray://")):
        return _parse_ray(text, url)
    parts = urlsplit(text)
    if parts.scheme != "local" or parts.netloc not in ("threads", "processes") or parts.path not in ("", "/"):
        raise ExecutorError(
            f"executor {url!r}: expected local://threads, local://processes[?workers=N], "
            "ray or ray://host:port"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"workers", "start"})
    if unknown:
        raise ExecutorError(f"executor {url!r}: unknown option {', '.join(unknown)} (known: workers, start)")
    workers = _one(query, "workers", url)
    start = _one(query, "start", url) or "spawn"
    if workers is not None and not (workers.isdigit() and 1 <= int(workers) <= 64):
        raise ExecutorError(f"executor {url!r}: workers must be a whole number from 1 to 64")
    if start not in ("spawn", "forkserver"):
        # fork is refused: mediapipe and onnxruntime start threads, and a forked copy of a lock
        # held by one of them deadlocks the child.
        raise ExecutorError(f"executor {url!r}: start must be spawn or forkserver, not {start!r}")
    kind: Kind = "threads" if parts.netloc == "threads" else "processes"
    method: StartMethod = "spawn" if start == "spawn" else "forkserver"
    return ExecutorChoice(kind=kind, workers=int(workers) if workers else None, start_method=method)


def _parse_ray(text: str, url: str) -> ExecutorChoice:
    address, _, query_text = text.partition("?")
    query = parse_qs(query_text, keep_blank_values=True)
    unknown = sorted(set(query) - {"workers"})
    if unknown:
        raise ExecutorError(f"executor {url!r}: unknown option {', '.join(unknown)} (known: workers)")
    if address != "ray":
        parts = urlsplit(address)
        if not parts.hostname or parts.path not in ("", "/"):
            raise ExecutorError(f"executor {url!r}: expected ray://host:port (a Ray Client address)")
        try:
            port = parts.port
        except ValueError as exc:
            raise ExecutorError(f"executor {url!r}: the port must be a number") from exc
        address = f"ray://{parts.hostname}:{port or 10001}"  # 10001: Ray Client's default port
    workers = _one(query, "workers", url)
    if workers is not None and not (workers.isdigit() and 1 <= int(workers) <= 256):
        raise ExecutorError(f"executor {url!r}: workers must be a whole number from 1 to 256")
    return ExecutorChoice(
        kind="ray", workers=int(workers) if workers else None, address=None if address == "ray" else address
    )


def _one(query: dict[str, list[str]], name: str, url: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise ExecutorError(f"executor {url!r}: {name} given {len(values)} times")
    return values[0]


@dataclass(frozen=True, slots=True)
class ScorerConfig:
    """Everything a worker needs to build the job's :class:`Scorer`; small, frozen and picklable.

    Reference photos travel as their encoded bytes and are decoded in the worker: decoded arrays
    would be larger to send, and the face analysis of them must happen where the models are.
    """

    thresholds: tuple[tuple[str, float], ...] = ()
    dimensions: tuple[str, ...] | None = None
    use_case: str | None = None
    rules: tuple[Rule, ...] = ()
    score_all: bool = False
    references: tuple[bytes, ...] = ()
    source: bytes | None = None  # the job's input image (background removal, product reference)
    brief_json: str = "{}"  # the job's CreativeBrief as JSON (it holds lists: not hashable itself)

    def __hash__(self) -> int:
        # Rules are pydantic models holding lists (not hashable); their JSON is canonical enough.
        rules = tuple(rule.model_dump_json() for rule in self.rules)
        return hash(
            (
                self.thresholds,
                self.dimensions,
                self.use_case,
                rules,
                self.score_all,
                self.references,
                self.source,
                self.brief_json,
            )
        )

    @classmethod
    def from_spec(cls, spec: JobSpec) -> ScorerConfig:
        """The scorer a job's spec asks for; SpecError names a reference photo that cannot be read."""
        return cls(
            thresholds=tuple(sorted(spec.thresholds.items())),
            use_case=spec.use_case,
            rules=tuple(spec.rules),
            score_all=spec.score_all,
            references=tuple(read_reference(path, index) for index, path in enumerate(spec.references)),
            source=read_source(spec.source),
            brief_json=spec.brief.model_dump_json(),
        )

    def build(self) -> Scorer:
        """Load the models and build the scorer (seconds with face models: once per process)."""
        references = []
        for index, data in enumerate(self.references):
            try:
                references.append(decode_image(data))
            except ImageError as exc:
                raise SpecError(f"reference photo {index + 1}: {exc}", field=f"references[{index}]") from exc
        return Scorer(
            thresholds=dict(self.thresholds) or None,
            dimensions=list(self.dimensions) if self.dimensions is not None else None,
            use_case=self.use_case,
            rules=self.rules,
            score_all=self.score_all,
            context=context_from(
                references=tuple(references),
                source=self.source,
                brief=CreativeBrief.model_validate_json(self.brief_json),
                use_case=self.use_case or "",
            ),
        )
