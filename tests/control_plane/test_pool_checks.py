"""The check of idle PostgreSQL connections (``engine.ping_when_idle``) on a real server, its clock in the test's
hands: a connection given back moments ago is used as it is; one idle past ``PING_AFTER_IDLE_SECONDS`` is checked
first, and replaced if the server closed it meanwhile (here: every other backend terminated, as a restart or a
failover would); a closed connection used moments ago fails one transaction, and then the whole pool is renewed. Through
the API, that transaction is a 503 ``database_unavailable`` that writes nothing, and the next request succeeds."""

from __future__ import annotations

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from operators.control_plane.app import create_app
from operators.control_plane.backends.noop import NoopBackend
from operators.control_plane.db.engine import PING_AFTER_IDLE_SECONDS, make_engine
from tests.clock import ManualClock
from tests.postgres import record_queries
from tests.replicas import issued_token, noop_settings, stack_with_tenants
from tests.waiting import wait_until

OTHERS = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def backend(engine: sqlalchemy.Engine) -> int:
    """The server process behind the connection a transaction gets."""
    with engine.begin() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def terminate_others(url: str) -> None:
    """End every other connection to the database, from a connection of its own, and wait until they are gone."""
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) {OTHERS}")
            wait_until(lambda: not conn.exec_driver_sql(f"SELECT count(*) {OTHERS}").scalar_one(), 10, "backends gone")
    finally:
        admin.dispose()


@pytest.fixture
def engine_and_clock(postgres_url):
    clock = ManualClock()
    engine = make_engine(postgres_url, clock=clock)
    yield engine, clock
    engine.dispose()


def test_only_a_connection_idle_past_the_delay_is_checked(engine_and_clock):
    engine, clock = engine_and_clock
    sent = record_queries(engine)
    first = backend(engine)  # a new connection: not checked
    clock.advance(PING_AFTER_IDLE_SECONDS)  # given back exactly that long ago: used as it is
    sent.clear()
    assert backend(engine) == first
    used_as_is = list(sent)
    assert "SELECT 1" not in used_as_is and used_as_is, used_as_is
    clock.advance(PING_AFTER_IDLE_SECONDS + 0.001)
    sent.clear()
    assert backend(engine) == first
    assert sent == ["SELECT 1", *used_as_is], sent  # one round trip more: the check


def test_an_idle_connection_the_server_closed_is_replaced_before_use(engine_and_clock, postgres_url):
    engine, clock = engine_and_clock
    first = backend(engine)
    terminate_others(postgres_url)
    clock.advance(PING_AFTER_IDLE_SECONDS + 1)
    assert backend(engine) != first  # checked, found closed, replaced: the transaction never saw it


def test_a_closed_connection_used_moments_ago_fails_one_transaction_then_the_pool_is_renewed(
    engine_and_clock, postgres_url
):
    engine, clock = engine_and_clock
    with engine.connect() as a, engine.connect() as b:  # two connections in the pool
        opened = {conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for conn in (a, b)}
    terminate_others(postgres_url)
    clock.advance(1)
    with pytest.raises(DBAPIError) as failed:
        backend(engine)
    assert failed.value.connection_invalidated
    # Both transactions after it get new connections: the other closed one is not handed out either.
    with engine.connect() as a, engine.connect() as b:
        now_open = {conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for conn in (a, b)}
    assert not now_open & opened


def test_through_the_api_the_request_that_meets_a_closed_connection_is_a_503_that_writes_nothing(
    postgres_url, tmp_path
):
    stack, (tenant,) = stack_with_tenants(tmp_path, 1, {})
    settings = noop_settings(tmp_path, stack, postgres_url)
    # No background sync and a backend in memory: the requests are the only users of the database's connections.
    app = create_app(settings, backend=NoopBackend(), sync=False)
    with TestClient(app) as client:
        headers = {"Authorization": "Bearer " + issued_token(tmp_path, tenant)}
        assert client.get("/v1/jobs", headers=headers).json()["jobs"] == []  # its connection given back just now
        terminate_others(postgres_url)
        refused = client.post("/v1/jobs", json={"entrypoint": "true"}, headers=headers)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "database_unavailable" and refused.headers["retry-after"]
        assert client.get("/v1/jobs", headers=headers).json()["jobs"] == []  # nothing was written
        assert client.post("/v1/jobs", json={"entrypoint": "true"}, headers=headers).status_code == 201
