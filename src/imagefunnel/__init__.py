"""imagefunnel: generate more than you need, score every candidate, deliver the best K at the least cost.

The library surface is small; everything else lives in subpackages (see ``docs/architecture.md``).
"""

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # the names below are imported on first use (see __getattr__)
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

# Where each public name lives. They are imported when first asked for, not with the package:
# ``import imagefunnel`` (and so every ``imagefunnel`` command, ``--help`` included) must not pay
# for OpenCV, SQLAlchemy and the scoring models that only some commands use.
_LAZY = {
    **dict.fromkeys(("Funnel", "FunnelObserver", "JobResult", "load_result"), "imagefunnel.funnel"),
    **dict.fromkeys(("DecodedImage", "decode_image"), "imagefunnel.imaging"),
    **dict.fromkeys(
        ("Capabilities", "Generation", "GenerationRequest", "Health", "PriceUnit", "Provider", "Quote"),
        "imagefunnel.providers.base",
    ),
    "Router": "imagefunnel.routing",
    **dict.fromkeys(("Scorer", "ScoringContext", "Verdict"), "imagefunnel.scoring"),
    **dict.fromkeys(("JobSpec", "load_spec", "parse_spec"), "imagefunnel.spec"),
    **dict.fromkeys(("BlobStore", "Store"), "imagefunnel.store"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
