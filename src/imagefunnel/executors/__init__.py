"""Where CPU work (scoring) runs: an in-process thread pool by default, or worker processes.

Chosen by a small URL (``local://threads``, ``local://processes?workers=2``); see :mod:`.config`.
"""

from imagefunnel.executors.config import (
    DEFAULT_EXECUTOR_URL,
    ExecutorChoice,
    ExecutorError,
    ScorerConfig,
    ScoringWorkerError,
    parse_executor_url,
)
from imagefunnel.executors.local import local_executor
from imagefunnel.executors.processes import open_executor, process_executor, run_in, warm_up, worker_scorer

__all__ = [
    "DEFAULT_EXECUTOR_URL",
    "ExecutorChoice",
    "ExecutorError",
    "ScorerConfig",
    "ScoringWorkerError",
    "local_executor",
    "open_executor",
    "parse_executor_url",
    "process_executor",
    "run_in",
    "warm_up",
    "worker_scorer",
]
