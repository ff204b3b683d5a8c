"""Throwaway PostgreSQL databases (benchmarks and tests never use a database that holds anything)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["scratch_database"]


@contextmanager
def scratch_database(server_url: str, *, prefix: str = "if_test") -> Iterator[str]:
    """The URL of a new, empty database on the server of ``server_url``, dropped afterwards, even
    while processes are still connected to it (``WITH (FORCE)``, PostgreSQL 13+)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
