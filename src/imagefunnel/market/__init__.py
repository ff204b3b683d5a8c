"""The emulated provider market: loopback fakes of provider APIs with prices, faults and defects.

A separate program that lives in the repo: only the demo wiring, tests and benchmarks import it.
"""

from imagefunnel.market.engine import BillingRecord, Market, ProviderStats
from imagefunnel.market.images import IDENTITY_DRIFT, Truth, Variation
from imagefunnel.market.scenario import (
    ProviderProfile,
    Scenario,
    SelfHostedBox,
    builtin_scenarios,
    load_scenario,
)
from imagefunnel.market.server import MarketServer

__all__ = [
    "IDENTITY_DRIFT",
    "BillingRecord",
    "Market",
    "MarketServer",
    "ProviderProfile",
    "ProviderStats",
    "Scenario",
    "SelfHostedBox",
    "Truth",
    "Variation",
    "builtin_scenarios",
    "load_scenario",
]
