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


def test_a_first_verdict_saved_by_two_workers_at_once_does_not_fail(postgres_url: str) -> None:
    """Worker A inserts a key's first row and has not committed; worker B saves the same key. B must
    wait for A and then update the row (a select-then-insert would find nothing and fail on A's row)."""
    import threading

    from sqlalchemy import text

    from imagefunnel.routing.passrates import PassRate

    first, second = Store(postgres_url), Store(postgres_url)
    try:
        holder = first.engine.connect()
        holding = holder.begin()
        holder.execute(
            text(
                "INSERT INTO pass_rates (provider, model, use_case, alpha, beta, updated_at)"
                " VALUES (:p, :m, :u, 3, 1, 1)"
            ),
            {"p": KEY.provider, "m": KEY.model, "u": KEY.use_case},
        )
        errors: list[BaseException] = []

        def save_from_b() -> None:
            try:
                SqlPassRates(second.engine).save_pass_rate(PassRate(KEY, 5.0, 2.0, 2.0))
            except BaseException as exc:  # the assertion below reports it
                errors.append(exc)

        worker_b = threading.Thread(target=save_from_b)
        worker_b.start()
        worker_b.join(timeout=0.5)  # B blocks on A's uncommitted row (or has already failed)
        holding.commit()
        holder.close()
        worker_b.join(timeout=30)
        assert not worker_b.is_alive()
        assert errors == []
        (saved,) = list(SqlPassRates(first.engine).load_pass_rates())
        assert (saved.alpha, saved.beta) == (5.0, 2.0)
    finally:
        first.close()
        second.close()
