"""The oracle's hindsight: the true expected cost per accepted image of each provider at any moment.

It knows what no router can: the scenario's price schedule and outage windows, every provider's
defect, garbage and defect-mix rates, and the scorer's measured catch rate per defect kind. It does
not know individual coin flips (which image of a provider will be defective), so it is the best a
router can do in expectation: the floor every policy is measured against.
"""

from __future__ import annotations

from imagefunnel.bench.sim import expected_usd
from imagefunnel.bench.verdicts import ScorerCalibration
from imagefunnel.market.defects import Defect
from imagefunnel.market.faults import GarbageFault
from imagefunnel.market.scenario import ProviderProfile, Scenario
from imagefunnel.providers.base import GenerationRequest

__all__ = ["ScenarioHindsight", "true_pass_rate"]


def true_pass_rate(profile: ProviderProfile, calibration: ScorerCalibration) -> float:
    """P(a billed output of ``profile`` passes the scorer): clean or a missed defect, not garbage."""
    mix = {kind: weight for kind, weight in profile.defect_mix.items() if weight > 0}
    total = sum(mix.values())
    defective_pass = (
        sum(weight * calibration.p_pass(kind) for kind, weight in mix.items()) / total if total > 0 else 0.0
    )
    model_pass = (1 - profile.defect_rate) * calibration.p_pass(None) + profile.defect_rate * defective_pass
    # Garbage: half black (scored, almost always rejected), half truncated (never scored).
    garbage_pass = 0.5 * calibration.p_pass(Defect.BLACK)
    return (1 - profile.garbage_rate) * model_pass + profile.garbage_rate * garbage_pass


class ScenarioHindsight:
    """Implements :class:`imagefunnel.routing.Hindsight` for a scenario and a request shape."""

    def __init__(
        self, scenario: Scenario, calibration: ScorerCalibration, *, request: GenerationRequest
    ) -> None:
        self._profiles = {profile.name: profile for profile in scenario.providers}
        self._pass = {name: true_pass_rate(p, calibration) for name, p in self._profiles.items()}
        self._black_pass = calibration.p_pass(Defect.BLACK)
        self._request = request

    def pass_rate(self, provider: str) -> float:
        return self._pass[provider]

    def pass_at(self, provider: str, now: float) -> float:
        """P(a billed output of ``provider`` passes) for a request submitted at ``now``, garbage
        windows included."""
        return self._pass_at(self._profiles[provider], now)

    def cost_per_accepted(self, provider: str, model: str, now: float) -> float | None:
        # ``model`` is the router's name for the workload's model; every provider serves it (under
        # its own id), so only the provider matters here.
        profile = self._profiles.get(provider)
        if profile is None or profile.outage_at(now):
            return None
        p = self._pass_at(profile, now)
        if p <= 0:
            return None
        return expected_usd(profile, profile.price_at(now), self._request) / p

    def _pass_at(self, profile: ProviderProfile, now: float) -> float:
        """The pass rate of a billed output at ``now``: open garbage windows replace that fraction
        of outputs with black (scored, rarely passing) or truncated (never passing) images. 429 and
        5xx windows refuse requests for free, so they change availability, not the cost."""
        clean_share, garbage_pass = 1.0, 0.0
        for fault in profile.faults_at(now):
            if isinstance(fault, GarbageFault):
                if fault.garbage == "black":
                    garbage_pass += clean_share * fault.fraction * self._black_pass
                clean_share *= 1.0 - fault.fraction
        return clean_share * self._pass[profile.name] + garbage_pass
