"""Workers: run queued jobs claimed from the store (one process or many sharing one database)."""

from imagefunnel.workers.loop import JobWorker, ProvidersFactory, WorkerSettings

__all__ = ["JobWorker", "ProvidersFactory", "WorkerSettings"]
