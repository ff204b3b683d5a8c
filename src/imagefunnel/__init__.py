"""imagefunnel: generate more than you need, score every candidate, deliver the best K at the least cost.

The library surface is small; everything else lives in subpackages (see ``docs/architecture.md``).
"""

from imagefunnel.errors import (
    BadOutput,
    BudgetExceeded,
    ConnectionLost,
    ExecutorError,
    ImageDecodeError,
    ImageError,
    ImageFileError,
    ImageFunnelError,
    ImageTooLarge,
    NoProviderAvailable,
    NotAdmitted,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ScoringWorkerError,
    SharedStateError,
    SpecError,
    StoreError,
)
from imagefunnel.funnel import Funnel, FunnelObserver, JobResult, load_result
from imagefunnel.imaging import DecodedImage, decode_image
from imagefunnel.providers.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    Health,
    PriceUnit,
    Provider,
    Quote,
)
from imagefunnel.routing import Router
from imagefunnel.scoring import Scorer, ScoringContext, Verdict
from imagefunnel.spec import JobSpec, load_spec, parse_spec
from imagefunnel.store import BlobStore, Store

__version__ = "0.1.0"

__all__ = [
    "BadOutput",
    "BlobStore",
    "BudgetExceeded",
    "Capabilities",
    "ConnectionLost",
    "DecodedImage",
    "ExecutorError",
    "Funnel",
    "FunnelObserver",
    "Generation",
    "GenerationRequest",
    "Health",
    "ImageDecodeError",
    "ImageError",
    "ImageFileError",
    "ImageFunnelError",
    "ImageTooLarge",
    "JobResult",
    "JobSpec",
    "NoProviderAvailable",
    "NotAdmitted",
    "PriceUnit",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "Quote",
    "RateLimited",
    "Router",
    "Scorer",
    "ScoringContext",
    "ScoringWorkerError",
    "SharedStateError",
    "SpecError",
    "Store",
    "StoreError",
    "Verdict",
    "__version__",
    "decode_image",
    "load_result",
    "load_spec",
    "parse_spec",
]
