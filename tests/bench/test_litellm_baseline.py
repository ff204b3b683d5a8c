import pytest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
pytest.importorskip("litellm")
pytest.importorskip("time_machine")

from imagefunnel.bench.litellm_baseline import run_litellm  # noqa: E402
from imagefunnel.bench.simrun import SimSetup, run_policy  # noqa: E402
from imagefunnel.bench.verdicts import CLEAN, ScorerCalibration  # noqa: E402
from imagefunnel.bench.workload import Workload  # noqa: E402
from imagefunnel.market.scenario import Scenario  # noqa: E402

BASE = {"processing_s": [3, 5], "defect_mix": {"blur": 1}}
MARKET = Scenario.model_validate(
    {
        "name": "t",
        "seed": 4,
        "providers": [
            {
                **BASE,
                "name": "trap",
                "protocol": "fal",
                "models": ["fal-ai/flux/dev"],
                "price_usd_per_mp": 0.010,
                "defect_rate": 0.7,
            },
            {
                **BASE,
                "name": "good",
                "protocol": "openai",
                "models": ["flux-dev"],
                "pricing": {"unit": "image", "usd": 0.004},
                "defect_rate": 0.05,
            },
        ],
    }
)
CAL = ScorerCalibration({CLEAN: 0, "blur": 4, "black": 4}, {CLEAN: 4, "blur": 4, "black": 4}, 512, 512, 0.0)


def test_litellm_cost_routing_buys_by_list_price_and_pays_for_rejects() -> None:
    setup = SimSetup(
        MARKET, Workload(jobs=2, deliver=5, model="flux-dev", width=512, height=512), CAL, "trap"
    )
    litellm = run_litellm("cost-based-routing", setup)
    ours = run_policy("cost_per_accepted", setup)
    assert litellm.delivered == ours.delivered == 10
    # trap lists $0.0026 per 512² image, good $0.004: LiteLLM's static cost ranking picks trap.
    assert litellm.spend_by_provider.get("trap", 0) > 0.8 * litellm.spend_usd
    assert ours.cost_per_delivered < litellm.cost_per_delivered
