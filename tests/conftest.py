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

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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
    name = f"if_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each database the store supports (the test runs once per database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))
