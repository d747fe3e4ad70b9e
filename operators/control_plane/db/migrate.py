"""The control plane's schema: Alembic revisions (``migrations/``) applied under a database lock.

Every control-plane process upgrades the database when it starts (``Store``), and
``python -m operators.control_plane.db.migrate`` (``testbed db upgrade``) does it by hand. Replicas
starting together do not race: on PostgreSQL the upgrade runs in one transaction holding an
advisory lock, on SQLite in one ``BEGIN IMMEDIATE`` transaction (the database's single writer).
A database created before Alembic (tables, no ``alembic_version``) is stamped with the initial
revision, then upgraded. There are no downgrades.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any, Mapping

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, func, inspect, make_url, select
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
INITIAL_REVISION = "0001_initial"
LEGACY_TABLE = "jobs"  # present in every database the pre-Alembic code created


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def sqlite_immediate(engine: Engine) -> None:
    """Open every transaction of this SQLite engine (the migrations') with ``BEGIN IMMEDIATE``: the database's write
    lock, taken at once. pysqlite's own transaction handling is switched off.

    The control plane's engine has no such event (an engine event makes SQLAlchemy dispatch events on every
    statement): its writes begin with ``BEGIN IMMEDIATE`` themselves (``Database._writer``).
    """

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _config(connection: Connection | None = None, opening_prices: Mapping[str, Any] | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["opening_prices"] = dict(opening_prices or {})  # tenant -> Price (0003_money)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, f"no revisions in {MIGRATIONS}"
    return head


def _migration_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})
        sqlite_immediate(engine)
        return engine
    return create_engine(url, poolclass=NullPool)


def upgrade(
    url: str, revision: str = "head", opening_prices: Mapping[str, Any] | None = None
) -> tuple[str | None, str]:
    """Bring the database at ``url`` to ``revision`` (the newest); (its revision before, after).

    ``opening_prices`` (tenant -> ``testbed.config.Price``): what 0003_money prices today's usage at.
    """
    engine = _migration_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(lock_key("testbed:migrations"))))
            else:
                conn.exec_driver_sql("SELECT 1")  # BEGIN IMMEDIATE: the write lock, until commit
            before = MigrationContext.configure(conn).get_current_revision()
            config = _config(conn, opening_prices)
            if before is None and inspect(conn).has_table(LEGACY_TABLE):
                command.stamp(config, INITIAL_REVISION)  # created by the code before Alembic
                before = INITIAL_REVISION
            if before != (head_revision() if revision == "head" else revision):
                command.upgrade(config, revision)
            after = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
    finally:
        engine.dispose()
    assert after is not None
    return before, after


def opening_prices(stack: Any, backend: str, now: float | None = None) -> dict[str, Any]:
    """Tenant -> the price its usage so far is opened at (the row in force now for its pool)."""
    import time

    from testbed.config import pricing_pool

    prices = {}
    for tenant in stack.tenants:
        try:
            prices[tenant.id] = stack.price_for(
                pricing_pool(stack, tenant, backend), time.time() if now is None else now
            )
        except KeyError:
            pass
    return prices


def main(argv: list[str] | None = None) -> int:
    """``python -m operators.control_plane.db.migrate (--settings FILE | --database-url URL)``."""
    parser = argparse.ArgumentParser(prog="testbed db upgrade", description="Upgrade the control plane's database.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--settings", help="the control plane's settings JSON (its database_url)")
    where.add_argument("--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg2://user:pw@host/db")
    args = parser.parse_args(argv)
    try:
        url, prices = args.database_url, None
        if args.settings:
            from testbed.settings import ControlPlaneSettings

            from testbed.config import load_stack_file

            settings = ControlPlaneSettings.from_file(args.settings)
            url = settings.database_url
            prices = opening_prices(load_stack_file(settings.stack_file), settings.backend)
        before, after = upgrade(url, opening_prices=prices)
    except Exception as exc:  # one line, no traceback: a bad URL, an unreachable server, a failed revision
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        print(f"cannot upgrade the database: {text}", file=sys.stderr)
        return 1
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"{shown}: {before or 'empty'} -> {after}" + (" (already up to date)" if before == after else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
