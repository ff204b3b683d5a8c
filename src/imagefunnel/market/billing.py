"""What the emulated market charges for one request, in every unit a scenario can price in.

Kept apart from the adapters' own price models on purpose: the billing log is the provider's side of
the bill, computed independently, so a test that compares an adapter's charge with it checks
something instead of comparing a formula with itself.

| unit         | quantity billed                                   | usd                                 |
|--------------|---------------------------------------------------|-------------------------------------|
| `megapixel`  | output megapixels                                 | price × quantity                    |
| `image`      | 1 per output image                                | price × quantity                    |
| `gpu_second` | scenario seconds the job ran (until it was cancelled) | price × quantity                |
| `token`      | output tokens the protocol reported               | (out × price + in × input_usd) / 1M |

Only ``gpu_second`` pricing bills a job that was cancelled while running, or failed (preempted or
not): the GPU time was spent, as Replicate bills a hardware-priced prediction's ``predict_time``
whatever its end; every other unit bills finished outputs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagefunnel.market.scenario import ProviderProfile

if TYPE_CHECKING:  # engine imports this module; the type is only needed for annotations
    from imagefunnel.market.engine import Job

__all__ = ["BillingRecord", "bill"]

_PER_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class BillingRecord:
    """What a provider charged for one request."""

    provider: str
    request_id: str
    model: str
    megapixels: float
    unit_price_usd: float
    usd: float
    billed_at_s: float
    garbage: bool
    unit: str = "megapixel"
    quantity: float = 0.0  # in ``unit``s; output tokens for token pricing


def bill(job: Job, profile: ProviderProfile, *, ended_s: float, finished: bool) -> BillingRecord | None:
    """The charge for ``job``, which ended at ``ended_s`` (``finished``: with an output); ``None``
    if it is free."""
    unit = profile.price_unit
    price = job.unit_price_usd
    if unit == "gpu_second":
        quantity = max(0.0, ended_s - job.started_s)
        usd = price * quantity
    elif not finished:
        return None
    elif unit == "token":
        quantity = float(job.input.output_tokens)
        input_usd = profile.pricing.input_usd if profile.pricing is not None else 0.0
        usd = (job.input.output_tokens * price + job.input.input_tokens * input_usd) / _PER_MILLION
    elif unit == "image":
        quantity = 1.0
        usd = price
    else:
        quantity = job.input.megapixels
        usd = price * quantity
    if usd <= 0:
        return None
    return BillingRecord(
        provider=job.provider,
        request_id=job.id,
        model=job.model,
        megapixels=job.input.megapixels,
        unit_price_usd=price,
        usd=usd,
        billed_at_s=ended_s,
        garbage=job.truth.garbage,
        unit=unit,
        quantity=quantity,
    )
