from pathlib import Path

import pytest
from sqlalchemy import inspect

from imagefunnel.routing import PassRateBook, PassRateKey
from imagefunnel.store import Store
from imagefunnel.store.pass_rates import SqlPassRates

KEY = PassRateKey("budget", "fal-ai/flux/dev", "headshot")


def test_migration_0002_creates_the_pass_rates_table(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        columns = {c["name"] for c in inspect(store.engine).get_columns("pass_rates")}
        assert columns == {"provider", "model", "use_case", "alpha", "beta", "updated_at"}
    finally:
        store.close()


def test_pass_rates_survive_a_restart_and_are_shared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = Store(url)
    try:
        book = PassRateBook(clock=lambda: 1000.0, persistence=SqlPassRates(first.engine))
        for passed in (True, False, False):
            book.observe(KEY, passed)
    finally:
        first.close()
    second = Store(url)
    try:
        again = PassRateBook(clock=lambda: 1000.0, persistence=SqlPassRates(second.engine))
        rate = again.get(KEY)
        assert (rate.alpha, rate.beta) == pytest.approx((3.0, 3.0))  # prior (2, 1) + 1 pass, 2 fails
        assert again.get(PassRateKey("premium", "fal-ai/flux/dev", "headshot")).mean == pytest.approx(2 / 3)
    finally:
        second.close()
