"""Alembic owns the schema: a database made by the released code (commit d058584, vendored under
data/) upgrades to head with everything intact, on SQLite and on PostgreSQL; the initial revision is
that schema exactly; head is what the models say; concurrent upgrades do not race; ``testbed db upgrade``."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from operators.control_plane.db import migrate
from operators.control_plane.db.ledger import Ledger
from operators.control_plane.db.models import Base, UsageJobRow, UsageTotalRow
from operators.control_plane.db.store import Store


DATA = Path(__file__).parent / "data"
SNAPSHOT_JOBS = 7
FINISHED = {
    "job-snapshot000001": "SUCCEEDED",
    "job-snapshot000002": "FAILED",
    "job-snapshot000003": "STOPPED",
    "job-snapshot000004": "STOPPED",
    "job-snapshot000005": "SUCCEEDED",
}
T0 = 1_780_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def empty_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cp.db'}"
    return request.getfixturevalue("postgres_url")


def load_snapshot(url: str) -> None:
    """A database as the released code left it: its DDL and data, no alembic_version."""
    dialect = sa.make_url(url).get_backend_name()
    script = (DATA / f"schema_d058584.{dialect}.sql").read_text()
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    try:
        if dialect == "sqlite":
            raw.driver_connection.executescript(script)
        else:
            with raw.cursor() as cursor:
                cursor.execute(script)
            raw.commit()
    finally:
        raw.close()
        engine.dispose()


def schema(url: str) -> dict[str, dict]:
    """Every table's columns (type, nullable, default), primary key and indexes, as reflected."""
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    tables = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        tables[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
            "unique": inspector.get_unique_constraints(table),
            "foreign_keys": inspector.get_foreign_keys(table),
        }
    engine.dispose()
    return tables


def rows(url: str, table: str, order: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        result = [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}"))]
    engine.dispose()
    return result


def test_the_initial_revision_is_the_released_schema(empty_url, tmp_path, request):
    released = empty_url
    load_snapshot(released)
    if released.startswith("sqlite"):
        migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        migrated = request.getfixturevalue("postgres_server").create_database()
    assert migrate.upgrade(migrated, revision=migrate.INITIAL_REVISION) == (None, migrate.INITIAL_REVISION)
    assert schema(migrated) == schema(released)
    assert set(schema(released)) == {"tokens", "jobs", "usage_totals"}


def test_a_released_database_upgrades_to_head_with_everything_intact(empty_url):
    load_snapshot(empty_url)
    before = {
        table: rows(empty_url, table, key)
        for table, key in (("tokens", "token_hash"), ("jobs", "id"), ("usage_totals", "tenant, gpu_model"))
    }
    store = Store(empty_url)  # what every control plane does at start: stamp 0001, upgrade to head
    ledger = Ledger(store)
    ledger.install()
    try:
        with store.session() as s:
            assert s.scalar(sa.text("SELECT version_num FROM alembic_version")) == migrate.head_revision()
        tokens = rows(empty_url, "tokens", "token_hash")  # + name ('default'), revoked_at (None)
        assert [t[:4] for t in tokens] == before["tokens"] and all(t[4:] == ("default", None) for t in tokens)
        assert rows(empty_url, "usage_totals", "tenant, gpu_model") == before["usage_totals"]
        jobs = rows(empty_url, "jobs", "id")
        width = len(before["jobs"][0])  # later columns (stop_requested_at, idle_*, stop_reason) are empty or zero
        assert [job[:width] for job in jobs] == before["jobs"]
        assert all(value in (None, 0) for job in jobs for value in job[width:])
        assert "한글 로그" in store.get_job("job-snapshot000001").logs
        assert len(store.list_jobs()) == SNAPSHOT_JOBS
        # every finished job has its usage row (backfilled), and the rows add up to the totals kept
        with store.session() as s:
            usage = {u.job_id: u for u in s.scalars(sa.select(UsageJobRow))}
            totals = list(s.scalars(sa.select(UsageTotalRow)))
        assert {job_id: u.status for job_id, u in usage.items()} == FINISHED
        for total in totals:
            mine = [u for u in usage.values() if (u.tenant, u.gpu_model) == (total.tenant, total.gpu_model)]
            assert sum(u.cpu_seconds for u in mine) == pytest.approx(total.cpu_seconds)
            assert sum(u.gpu_seconds for u in mine) == pytest.approx(total.gpu_seconds)
        snapshot = ledger.snapshot(now=T0 + 1000)
        # the running job ends after the upgrade: folded once, even when folded again
        store.update_job("job-snapshot000006", status="SUCCEEDED", ended_at=T0 + 170)
        ledger.backfill()
        after = ledger.snapshot(now=T0 + 1000)["changwon-precision"]
        assert after.gpu_seconds["l4"] == pytest.approx(snapshot["changwon-precision"].gpu_seconds["l4"] + 100)
        assert after.jobs["SUCCEEDED"] == 2 and after.jobs["RUNNING"] == 0
    finally:
        store.close()
    assert migrate.upgrade(empty_url) == (migrate.head_revision(), migrate.head_revision())  # again: nothing to do


def test_head_is_what_the_models_say(empty_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    migrate.upgrade(empty_url)
    engine = sa.create_engine(empty_url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert differences == []


def test_replicas_upgrading_together_do_not_race(empty_url):
    """Four processes' worth of upgrades at once on an empty database: one migrates, the rest wait and find it done."""
    results, errors = [], []

    def upgrade() -> None:
        try:
            results.append(migrate.upgrade(empty_url))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    head = migrate.head_revision()
    assert sorted(results, key=str) == sorted([(None, head)] + [(head, head)] * 3, key=str)


@pytest.mark.integration  # starts a real process
def test_testbed_db_upgrade(tmp_path):
    from tests.replicas import noop_settings
    from testbed.config import stack_file_for

    url = f"sqlite:///{tmp_path / 'cp.db'}"
    load_snapshot(url)
    cli = [sys.executable, "-m", "embedded.cli"]
    done = subprocess.run([*cli, "db", "upgrade", "--database-url", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{url}: {migrate.INITIAL_REVISION} -> {migrate.head_revision()}"
    settings = tmp_path / "settings.json"
    noop_settings(tmp_path, stack_file_for("gyeongnam"), url).write(settings)
    done = subprocess.run(
        [*cli, "db", "upgrade", "--settings", str(settings)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("(already up to date)"), done.stderr
    bad = subprocess.run(
        [*cli, "db", "upgrade", "--database-url", "postgresql+psycopg2://x:secret@127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    [line] = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and line.startswith("testbed: error: cannot upgrade the database:"), bad.stderr
    assert "secret" not in line
