"""Run the Alembic migrations that ship inside the package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

# Any constant: PostgreSQL advisory lock that serialises schema upgrades of processes starting together.
_UPGRADE_LOCK = 0x1F_0A_6E_1


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "imagefunnel.store:migrations")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision, reusing the engine's connection."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Several workers may start at once on one database: one upgrades, the others wait and
            # then find the schema current (the lock ends with the transaction).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
