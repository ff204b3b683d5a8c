"""A scenario with its faults stripped: the baseline a faulty run's job latency is judged against.

"Faults" are what a scenario injects to make requests fail: the timed ``faults`` windows (429
storms, 5xx bursts, garbage, connection resets, cold starts, preemption, an unreachable address),
``outages``, and the steady ``error_5xx_rate``, ``failure_rate`` and ``garbage_rate`` (a
self-hosted box's ``error_rate``, ``hang_rate``, ``garbage_rate``, ``ws_drop_rate`` and
``outages``). Everything else is the market's ordinary behaviour and stays as it is: prices and
their schedules (a price spike is the market moving, not failing), queue and processing times,
slots, the steady ``rate_limit_per_s`` a provider publishes, defect and identity-drift rates (what
the scorer rejects is image quality, not a failed request), the seed and the name.
"""

from __future__ import annotations

from imagefunnel.market.scenario import ProviderProfile, Scenario, SelfHostedBox

__all__ = ["has_faults", "without_faults"]

_PROVIDER_CLEAN: dict[str, object] = {
    "faults": (),
    "outages": (),
    "error_5xx_rate": 0.0,
    "failure_rate": 0.0,
    "garbage_rate": 0.0,
}
_BOX_CLEAN: dict[str, object] = {
    "outages": (),
    "error_rate": 0.0,
    "hang_rate": 0.0,
    "garbage_rate": 0.0,
    "ws_drop_rate": 0.0,
}


def _provider(profile: ProviderProfile) -> ProviderProfile:
    return profile.model_copy(update=_PROVIDER_CLEAN)


def _box(box: SelfHostedBox) -> SelfHostedBox:
    return box.model_copy(update=_BOX_CLEAN)


def without_faults(scenario: Scenario) -> Scenario:
    """``scenario`` with every fault removed and everything else identical (see the module)."""
    return scenario.model_copy(
        update={
            "providers": tuple(_provider(p) for p in scenario.providers),
            "comfyui_boxes": tuple(_box(b) for b in scenario.comfyui_boxes),
        }
    )


def has_faults(scenario: Scenario) -> bool:
    """Whether stripping the faults changes ``scenario`` (else a fault-free run would be a rerun)."""
    return without_faults(scenario) != scenario
