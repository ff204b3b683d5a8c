"""Check a spec's provider choice against what the configured providers offer, before anything runs.

A spec names providers (``providers.allow`` / ``providers.deny``) and a model by string; a typo in
either used to be accepted silently (a ``deny`` of a name that exists nowhere) or surface later as
"the router needs at least one provider". Both are refused here, naming what is known.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Set

from imagefunnel.errors import SpecError
from imagefunnel.spec.models import JobSpec

__all__ = ["check_offer"]


def _known(names: Set[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def _did_you_mean(name: str, names: Set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def check_offer(spec: JobSpec, offer: Mapping[str, Set[str]]) -> None:
    """Raise ``SpecError`` unless every provider the spec names exists in ``offer`` (provider name →
    the models it serves) and some permitted provider serves ``spec.model``."""
    names = set(offer)
    for field, listed in (("providers.allow", spec.providers.allow), ("providers.deny", spec.providers.deny)):
        for name in listed:
            if name not in names:
                raise SpecError(
                    f"{field}: unknown provider {name!r}{_did_you_mean(name, names)}; "
                    f"known providers: {_known(names)}",
                    field=field,
                )
    serving = {name for name, models in offer.items() if spec.model in models}
    if not serving:
        served = set().union(*offer.values()) if offer else set()
        raise SpecError(
            f"model: no provider serves {spec.model!r}{_did_you_mean(spec.model, served)}; "
            f"models served: {_known(served)}",
            field="model",
        )
    permitted = {name for name in serving if spec.providers.permits(name)}
    if not permitted:
        raise SpecError(
            f"providers: allow/deny leave no provider for model {spec.model!r}; "
            f"it is served by {_known(serving)}",
            field="providers",
        )
