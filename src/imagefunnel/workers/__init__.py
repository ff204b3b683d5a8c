"""Workers: run queued jobs claimed from the store (one process or many sharing one database)."""

from imagefunnel.workers.loop import (
    CancelCheck,
    EndHook,
    JobEnd,
    JobWorker,
    ProvidersFactory,
    WorkerSettings,
)
from imagefunnel.workers.recovery import owner_is_dead_here, release_dead_local_leases

__all__ = [
    "CancelCheck",
    "EndHook",
    "JobEnd",
    "JobWorker",
    "ProvidersFactory",
    "WorkerSettings",
    "owner_is_dead_here",
    "release_dead_local_leases",
]
