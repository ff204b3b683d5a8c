"""Where CPU work (scoring) runs: an in-process pool by default."""

from imagefunnel.executors.local import local_executor

__all__ = ["local_executor"]
