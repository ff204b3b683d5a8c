"""Routing: place each request on the provider with the least expected cost per accepted image,
fall back on failure, keep every provider's health, prices and pass rates, and record every spend."""

from imagefunnel.routing.breaker import BreakerSettings, BreakerState, CircuitBreaker
from imagefunnel.routing.budget import BudgetGuard, TenantBudgets
from imagefunnel.routing.capability import Requirements
from imagefunnel.routing.dispatch import HedgeSettings, TimeoutSettings
from imagefunnel.routing.health import HealthProber, HealthTracker, HealthView
from imagefunnel.routing.ledger import AttemptLedger, NullLedger, SpendBook, SpendLine, reconcile
from imagefunnel.routing.passrates import (
    PassRate,
    PassRateBook,
    PassRateKey,
    PassRatePersistence,
    PassRatePrior,
)
from imagefunnel.routing.policies import (
    CheapestPerCallPolicy,
    CostPerAcceptedPolicy,
    Hindsight,
    Option,
    OraclePolicy,
    Policy,
    RoundRobinPolicy,
    SinglePolicy,
    Situation,
)
from imagefunnel.routing.pricebook import PriceBook, PricedQuote, ProviderTraits
from imagefunnel.routing.router import RouteContext, RouteOptions, Router

__all__ = [
    "AttemptLedger",
    "BreakerSettings",
    "BreakerState",
    "BudgetGuard",
    "CheapestPerCallPolicy",
    "CircuitBreaker",
    "CostPerAcceptedPolicy",
    "HealthProber",
    "HealthTracker",
    "HealthView",
    "HedgeSettings",
    "Hindsight",
    "NullLedger",
    "Option",
    "OraclePolicy",
    "PassRate",
    "PassRateBook",
    "PassRateKey",
    "PassRatePersistence",
    "PassRatePrior",
    "Policy",
    "PriceBook",
    "PricedQuote",
    "ProviderTraits",
    "Requirements",
    "RoundRobinPolicy",
    "RouteContext",
    "RouteOptions",
    "Router",
    "SinglePolicy",
    "Situation",
    "SpendBook",
    "SpendLine",
    "TenantBudgets",
    "TimeoutSettings",
    "reconcile",
]
