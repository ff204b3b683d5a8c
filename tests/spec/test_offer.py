"""A spec's provider names and model are checked against what the providers offer, naming what is known."""

from __future__ import annotations

import pytest

from imagefunnel.errors import SpecError
from imagefunnel.spec import JobSpec
from imagefunnel.spec.offer import check_offer

OFFER = {"premium": {"fal-ai/flux/dev", "fal-ai/flux-pro/v1.1"}, "budget": {"fal-ai/flux/dev"}}


def spec(**fields: object) -> JobSpec:
    return JobSpec.model_validate(
        {"name": "t", "prompts": ["a headshot"], "deliver": 1, "budget_usd": 1, **fields}
    )


def test_a_spec_whose_names_exist_is_accepted() -> None:
    check_offer(spec(providers={"deny": ["premium"]}), OFFER)
    check_offer(spec(model="fal-ai/flux-pro/v1.1", providers={"allow": ["premium"]}), OFFER)


@pytest.mark.parametrize("field", ["allow", "deny"])
def test_an_unknown_provider_name_is_refused_with_the_known_ones(field: str) -> None:
    with pytest.raises(SpecError) as info:
        check_offer(spec(providers={field: ["budgett"]}), OFFER)
    assert str(info.value) == (
        f"providers.{field}: unknown provider 'budgett' (did you mean budget?); "
        "known providers: budget, premium"
    )
    assert info.value.field == f"providers.{field}"


def test_a_model_no_provider_serves_names_the_models_that_are_served() -> None:
    with pytest.raises(SpecError) as info:
        check_offer(spec(model="sdxl"), OFFER)
    assert str(info.value) == (
        "model: no provider serves 'sdxl'; models served: fal-ai/flux-pro/v1.1, fal-ai/flux/dev"
    )


def test_allow_and_deny_that_leave_no_provider_for_the_model_say_who_serves_it() -> None:
    with pytest.raises(
        SpecError, match=r"leave no provider for model 'fal-ai/flux-pro/v1.1'; it is served by premium"
    ):
        check_offer(spec(model="fal-ai/flux-pro/v1.1", providers={"deny": ["premium"]}), OFFER)
