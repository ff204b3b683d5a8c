"""Fixtures shared by every test package: the two databases the store runs on.

``store_url`` is parametrized over SQLite (the embedded default) and PostgreSQL (production). The
PostgreSQL server comes from ``IMAGEFUNNEL_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``); each test gets a database of its own, dropped afterwards, so tests
never depend on what the server already holds. Where the server cannot be reached the PostgreSQL case
is skipped with the reason, except under ``CI=true``, where an unreachable server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from imagefunnel.bench.scratch import scratch_database

POSTGRES_URL = os.environ.get(
    "IMAGEFUNNEL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin_url() -> str:
    return POSTGRES_URL


def _postgres_unreachable() -> str | None:
    try:
        engine = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver or connection error means "not here"
        return (
            f"PostgreSQL at {make_url(_admin_url()).render_as_string(hide_password=True)} unreachable: {exc}"
        )
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server (skip, or fail under CI=true, if none)."""
    why = _postgres_unreachable()
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return _admin_url()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with scratch_database(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each database the store supports (the test runs once per database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database shared by the tests of one module (one expensive run, many checks)."""
    with scratch_database(postgres_server) as url:
        yield url


# -- Redis (shared cooldowns across workers) ------------------------------------------------------
REDIS_URL = os.environ.get("IMAGEFUNNEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The URL of a reachable Redis server (skip without one, fail under CI=true)."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:  # no client library, refused, timed out: "not here"
        why = f"Redis at {REDIS_URL} unreachable: {exc!r}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test's own on the shared server; its keys are deleted afterwards."""
    import redis

    prefix = f"if-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


# -- Ray (scoring on a cluster) -------------------------------------------------------------------
@pytest.fixture(scope="session")
def ray_installed() -> object:
    """The ``ray`` module (skip without the optional 'ray' extra; fail under CI=true, which has it)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:  # the optional 'ray' extra; `make install` has it, so CI must too
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Ray is not installed: {exc}")
        pytest.skip("Ray (the optional 'ray' extra) is not installed")
    return ray


@pytest.fixture(scope="session")
def ray_local(ray_installed: object) -> Iterator[object]:
    """A local Ray instance, started once per test session (it takes seconds) and shut down at the end."""
    ray: Any = ray_installed
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
