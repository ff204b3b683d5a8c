"""The funnel: waves of requests until K candidates pass, then the best K are delivered."""

from imagefunnel.funnel.engine import Funnel, FunnelOutcome
from imagefunnel.funnel.events import CandidateScored, FunnelObserver, RequestFailed, WaveStarted
from imagefunnel.funnel.result import JobResult, load_result

__all__ = [
    "CandidateScored",
    "Funnel",
    "FunnelObserver",
    "FunnelOutcome",
    "JobResult",
    "RequestFailed",
    "WaveStarted",
    "load_result",
]
