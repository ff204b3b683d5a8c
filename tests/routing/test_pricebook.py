import asyncio

import pytest

from imagefunnel.errors import ProviderUnavailable
from imagefunnel.providers.base import GenerationRequest, PriceUnit, Quote
from imagefunnel.routing import PriceBook

REQ = GenerationRequest(request_id="r", model="m", prompt="p", width=1024, height=1024)


class Quoter:
    name = "q"

    def __init__(self, unit: PriceUnit = PriceUnit.PER_MEGAPIXEL, price: float = 0.02) -> None:
        self.unit, self.price, self.calls, self.fail = unit, price, 0, False

    async def quote(self, request: GenerationRequest) -> Quote:
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail:
            raise ProviderUnavailable("pricing 503", provider=self.name)
        usd = self.price * request.megapixels if self.unit is PriceUnit.PER_MEGAPIXEL else self.price * 6
        return Quote(self.name, request.model, usd, self.unit, self.price)


async def test_quotes_are_cached_for_the_ttl_and_refreshed_after() -> None:
    now = [0.0]
    book, quoter = PriceBook(clock=lambda: now[0], ttl_s=5.0), Quoter()
    first = await book.quote(quoter, REQ)  # type: ignore[arg-type]
    quoter.price = 0.03
    assert await book.quote(quoter, REQ) == first  # type: ignore[arg-type]
    now[0] = 6.0
    assert (await book.quote(quoter, REQ)).unit_price_usd == 0.03  # type: ignore[arg-type]
    assert quoter.calls == 2


async def test_concurrent_refreshes_share_one_pricing_call() -> None:
    book, quoter = PriceBook(clock=lambda: 0.0), Quoter()
    quotes = await asyncio.gather(*(book.quote(quoter, REQ) for _ in range(100)))  # type: ignore[arg-type]
    assert quoter.calls == 1
    assert len(set(quotes)) == 1


async def test_a_failed_quote_raises_the_providers_error() -> None:
    book, quoter = PriceBook(clock=lambda: 0.0), Quoter()
    quoter.fail = True
    with pytest.raises(ProviderUnavailable):
        await book.quote(quoter, REQ)  # type: ignore[arg-type]
    assert book.fresh("q", REQ) is None


def test_charge_drift_corrects_expected_prices() -> None:
    book = PriceBook(clock=lambda: 0.0, drift_alpha=1.0)
    quote = Quote("q", "m", 0.02, PriceUnit.PER_GPU_SECOND, 0.002)
    assert book.priced(quote, 0.0).expected_usd == pytest.approx(0.02)
    book.observe_charge(quote, 0.03)  # the run took 50 % longer than the quote assumed
    assert book.drift("q", "m") == pytest.approx(1.5)
    assert book.priced(quote, 0.0).expected_usd == pytest.approx(0.03)
    # A cold GPU-second provider also bills its boot time.
    assert book.priced(quote, 0.0, cold_start_s=10.0).expected_usd == pytest.approx(0.03 + 0.02)


def test_cold_start_costs_nothing_extra_on_per_image_prices() -> None:
    book = PriceBook(clock=lambda: 0.0)
    quote = Quote("q", "m", 0.04, PriceUnit.PER_IMAGE, 0.04)
    assert book.priced(quote, 0.0, cold_start_s=30.0).expected_usd == pytest.approx(0.04)


def _gpu_second_book() -> tuple[list[float], PriceBook, Quoter]:
    """A book on a hand-driven clock (quotes live 5 s, drift learned in full) and a GPU-second quoter."""
    now = [0.0]
    return (
        now,
        PriceBook(clock=lambda: now[0], ttl_s=5.0, drift_alpha=1.0),
        Quoter(PriceUnit.PER_GPU_SECOND, 0.002),
    )


async def test_a_charge_billed_after_a_price_rise_is_not_learned_as_drift() -> None:
    now, book, quoter = _gpu_second_book()
    quoted = await book.quote(quoter, REQ)  # type: ignore[arg-type]
    quoter.price = 0.006  # the spot price triples while the request runs
    now[0] = 6.0
    await book.quote(quoter, REQ)  # type: ignore[arg-type]  # the book has seen the new price
    book.observe_charge(quoted, quoted.usd * 3.0)  # billed at the new price
    assert book.drift("q", "m") == pytest.approx(1.0)


async def test_a_price_rise_seen_after_the_charge_takes_back_the_drift_it_explains() -> None:
    now, book, quoter = _gpu_second_book()
    quoted = await book.quote(quoter, REQ)  # type: ignore[arg-type]
    book.observe_charge(quoted, quoted.usd * 3.0)  # billed at a price the book has not seen yet
    assert book.drift("q", "m") == pytest.approx(3.0)
    quoter.price = 0.006
    now[0] = 6.0
    fresh = await book.quote(quoter, REQ)  # type: ignore[arg-type]
    # Priced at the new quote, not at the new quote times the spike a second time.
    assert book.priced(fresh, now[0]).expected_usd == pytest.approx(fresh.usd)


async def test_a_price_fall_does_not_erase_drift_upwards() -> None:
    now, book, quoter = _gpu_second_book()
    quoted = await book.quote(quoter, REQ)  # type: ignore[arg-type]
    book.observe_charge(quoted, quoted.usd * 1.5)  # runs take 50 % longer than quoted
    quoter.price = 0.001
    now[0] = 6.0
    await book.quote(quoter, REQ)  # type: ignore[arg-type]
    assert book.drift("q", "m") == pytest.approx(1.5, rel=0.05)


def test_learned_drift_fades_without_fresh_charges() -> None:
    now = [0.0]
    book = PriceBook(clock=lambda: now[0], drift_alpha=1.0, drift_half_life_s=60.0)
    quote = Quote("q", "m", 0.02, PriceUnit.PER_GPU_SECOND, 0.002)
    book.observe_charge(quote, 0.08)
    assert book.drift("q", "m") == pytest.approx(4.0)
    now[0] = 60.0
    assert book.drift("q", "m") == pytest.approx(2.0)  # half the log-distance to 1 per half-life
    now[0] = 600.0
    assert book.drift("q", "m") == pytest.approx(1.0, abs=0.01)
    book.observe_charge(quote, 0.04)  # fresh evidence counts in full again (alpha 1)
    assert book.drift("q", "m") == pytest.approx(2.0)
