from imagefunnel.providers.base import Capabilities, GenerationRequest
from imagefunnel.routing import ProviderTraits, Requirements
from imagefunnel.routing.capability import exclusion

REQ = GenerationRequest(request_id="r", model="m", prompt="p", width=1024, height=1024)


def test_capability_filter_names_each_reason() -> None:
    caps = Capabilities(models=frozenset({"m"}), max_width=1024, max_height=1024)
    eu = ProviderTraits(region="eu", retains_data=False)
    us = ProviderTraits(region="us", retains_data=True, trains_on_data=True)
    ok = Requirements()

    def why(
        request: GenerationRequest = REQ, traits: ProviderTraits = eu, req: Requirements = ok
    ) -> str | None:
        return exclusion(caps, traits, request, req, expected_latency_s=5.0)

    assert why() is None
    assert why(GenerationRequest("r", "other", "p")) == "does not serve other"
    assert why(GenerationRequest("r", "m", "p", width=2048)) == "max size 1024x1024"
    assert why(GenerationRequest("r", "m", "p", reference_images=(b"x",))) == "no reference images"
    assert why(traits=us, req=Requirements(regions=frozenset({"eu"}))) == "region us not allowed"
    assert why(traits=us, req=Requirements(no_data_retention=True)) == "retains data"
    assert why(traits=us, req=Requirements(no_training=True)) == "trains on customer data"
    assert why(req=Requirements(max_latency_s=2.0)) == "expected latency 5.0s over 2.0s"
