"""Statements a PostgreSQL connection repeats, run as prepared statements (``pg_round_trips.PreparedStatements``), on a real
server: prepared once a connection has run one ``PREPARE_AFTER_EXECUTIONS`` times, with the same rows as before; a
second connection's ``PREPARE`` rides on its next statement (no round trip more); one PostgreSQL refuses runs as text
and aborts nothing; a prepared statement outlives a rolled-back transaction; a connection opened again prepares again;
a warmed-up admission is still four round trips, now ``EXECUTE``s."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import bindparam, select, text

from operators.control_plane.db import pg_round_trips
from operators.control_plane.db.pg_round_trips import PREPARE_AFTER_EXECUTIONS
from operators.control_plane.db.models import TokenRow
from operators.control_plane.db.store import Store
from tests.benchmarks.bench_admission_throughput import planes_for
from tests.control_plane.test_commit_writes import check_admission
from tests.postgres import record_queries

SUBJECT = select(TokenRow.subject).where(TokenRow.token_hash == bindparam("hash"))
UNTYPED = text("SELECT :value IS NULL")  # PostgreSQL cannot tell the parameter's type: PREPARE refuses it


@pytest.fixture
def store(postgres_url, monkeypatch):
    monkeypatch.setattr(pg_round_trips, "_prepared_somewhere", set())  # what other tests prepared is not known here
    monkeypatch.setattr(pg_round_trips, "_unpreparable", set())
    store = Store(postgres_url)
    with store.engine.begin() as conn:
        conn.execute(
            TokenRow.__table__.insert(),
            [
                {"token_hash": name.ljust(64, "-"), "subject": name, "role": "tenant", "created_at": 0.0}
                for name in ("ann", "bob")
            ],
        )
    yield store
    store.close()


def prepared_on(conn) -> list[str]:
    """The statements prepared on this connection's server session."""
    return list(conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars())


def subject(conn, name: str) -> str:
    with conn.begin():
        return conn.execute(SUBJECT, {"hash": name.ljust(64, "-")}).scalar_one()


def test_a_statement_run_five_times_on_a_connection_is_prepared_and_gives_the_same_rows(store):
    sent = record_queries(store.engine)
    with store.engine.connect() as conn:
        runs = []
        for i in range(PREPARE_AFTER_EXECUTIONS + 3):
            sent.clear()
            runs.append((subject(conn, ("ann", "bob")[i % 2]), list(sent)))
        assert [name for name, _ in runs] == ["ann", "bob"] * ((PREPARE_AFTER_EXECUTIONS + 3) // 2)
        assert all("EXECUTE" not in query for _, queries in runs[: PREPARE_AFTER_EXECUTIONS - 1] for query in queries)
        # the fifth run: PREPARE in a round trip of its own (no connection had prepared it), then EXECUTE
        prepare, execute, commit = runs[PREPARE_AFTER_EXECUTIONS - 1][1]
        assert prepare.startswith("PREPARE tb_1 AS SELECT tokens.subject") and "$1" in prepare, prepare
        assert execute.startswith("BEGIN;EXECUTE tb_1(") and commit == "COMMIT"
        for _, queries in runs[PREPARE_AFTER_EXECUTIONS:]:
            assert len(queries) == 2 and queries[0].startswith("BEGIN;EXECUTE tb_1("), queries
        assert prepared_on(conn) == [prepare]  # the server keeps the PREPARE as it was sent


def test_a_second_connection_prepares_with_its_next_statement_in_the_same_round_trip(store):
    sent = record_queries(store.engine)
    with store.engine.connect() as first, store.engine.connect() as second:
        for _ in range(PREPARE_AFTER_EXECUTIONS):
            subject(first, "ann")
        for _ in range(PREPARE_AFTER_EXECUTIONS - 1):
            subject(second, "bob")
        sent.clear()
        assert subject(second, "bob") == "bob"
        query, commit = sent
        assert query.startswith("BEGIN;PREPARE tb_1 AS SELECT tokens.subject") and ";EXECUTE tb_1(" in query, query
        assert len(prepared_on(second)) == 1


def test_a_statement_postgresql_will_not_prepare_runs_as_text_and_aborts_nothing(store, caplog):
    sent = record_queries(store.engine)
    with caplog.at_level(logging.WARNING, logger=pg_round_trips.__name__), store.engine.connect() as conn:
        for _ in range(PREPARE_AFTER_EXECUTIONS + 1):
            with conn.begin():
                conn.execute(TokenRow.__table__.delete().where(TokenRow.subject == "bob"))
                assert conn.execute(UNTYPED, {"value": None}).scalar_one() is True
        assert "could not determine data type of parameter $1" in caplog.text
    with store.engine.connect() as other:  # not tried again on another connection
        sent.clear()
        for _ in range(PREPARE_AFTER_EXECUTIONS + 1):
            with other.begin():
                assert other.execute(UNTYPED, {"value": 1}).scalar_one() is False
        assert not any("PREPARE" in query and "IS NULL" in query for query in sent), sent
    with store.engine.connect() as conn:  # the transactions around the refused PREPARE committed
        assert list(conn.execute(select(TokenRow.subject)).scalars()) == ["ann"]


def test_a_prepared_statement_outlives_a_rolled_back_transaction(store):
    with store.engine.connect() as first, store.engine.connect() as second:
        for _ in range(PREPARE_AFTER_EXECUTIONS):
            subject(first, "ann")
        for _ in range(PREPARE_AFTER_EXECUTIONS - 1):
            subject(second, "bob")
        with pytest.raises(Exception, match="division by zero"), second.begin():
            second.execute(SUBJECT, {"hash": "bob".ljust(64, "-")})  # PREPARE rides on it, in the transaction
            second.exec_driver_sql("SELECT 1 / 0")
        assert subject(second, "ann") == "ann"  # EXECUTE: still prepared
        assert len(prepared_on(second)) == 1


def test_a_connection_opened_again_prepares_again(store):
    sent = record_queries(store.engine)
    with store.engine.connect() as conn:
        for _ in range(PREPARE_AFTER_EXECUTIONS):
            subject(conn, "ann")
        assert len(prepared_on(conn)) == 1
        conn.invalidate()  # the server session is gone, and what it had prepared with it
    with store.engine.connect() as conn:
        sent.clear()
        assert subject(conn, "bob") == "bob"  # sent as text: an EXECUTE would name a statement this session lacks
        assert sent[0].startswith("BEGIN;SELECT tokens.subject"), sent
        for _ in range(PREPARE_AFTER_EXECUTIONS):
            subject(conn, "ann")
        assert len(prepared_on(conn)) == 1


def test_a_warmed_up_admission_is_four_executes_and_writes_every_row(postgres_url, tmp_path):
    (plane,), (tenant, _) = planes_for(postgres_url, tmp_path, 2, 1)
    try:
        # the fifth admission runs each statement a fifth time; the sixth prepares them, the first in this process
        # in round trips of their own; the seventh is four EXECUTEs
        check_admission(plane, tenant, warm_up=PREPARE_AFTER_EXECUTIONS + 1, prepared=True)
    finally:
        plane.shutdown()
