"""PostgreSQL transactions whose ``BEGIN`` rides on their first statement (``pg_round_trips.postgresql_begin_with_first_statement``).

psycopg2 stays in autocommit, so it sends no ``BEGIN`` of its own: each test shows the transaction is still there
(uncommitted writes invisible to others, a failure undoing them, a commit making them durable), and that a
connection given back with a transaction open is rolled back before anyone else gets it. Real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, insert, select, text

from operators.control_plane.db import commit_writes
from operators.control_plane.db.models import TokenRow
from operators.control_plane.db.store import Store


def _token(name: str) -> TokenRow:
    return TokenRow(token_hash=name.ljust(64, "-"), subject=name, role="tenant", created_at=0.0)


def _tokens(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(TokenRow)).scalar_one()


@pytest.fixture()
def store(postgres_url) -> Iterator[Store]:
    store = Store(postgres_url)
    yield store
    store.close()


def test_psycopg2_sends_no_begin_of_its_own(store):
    with store.engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is True


def test_a_transactions_writes_are_invisible_to_others_until_it_commits(store):
    with store.lock("test:begin") as session:
        session.add(_token("a"))
        session.flush()  # the INSERT is sent, in the transaction
        assert _tokens(store) == 0  # another connection: not committed yet (no autocommit)
        pid = session.execute(select(func.pg_backend_pid())).scalar_one()
        with store.engine.connect() as other:
            state = other.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar()
        assert state == "idle in transaction"
    assert _tokens(store) == 1


def _raise_boom(_session) -> None:
    raise RuntimeError("boom")


def _divide_by_zero(session) -> None:
    session.execute(text("SELECT 1 / 0"))  # PostgreSQL aborts the transaction


@pytest.mark.parametrize(
    ("fail", "error"), [(_raise_boom, "boom"), (_divide_by_zero, "division by zero")], ids=["raised", "statement"]
)
def test_a_failure_undoes_the_whole_transaction_and_the_connection_serves_the_next(store, fail, error):
    with pytest.raises(Exception, match=error):
        with store.lock("test:begin") as session:
            session.add(_token("b"))
            session.flush()
            fail(session)
    assert _tokens(store) == 0
    with store.lock("test:begin") as session:  # the failed transaction is not in the way
        session.add(_token("d"))
    assert _tokens(store) == 1


def test_a_connection_given_back_in_a_transaction_is_rolled_back_at_checkin(store):
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cursor:  # a transaction SQLAlchemy does not know of
            cursor.execute(
                "BEGIN; INSERT INTO tokens (token_hash, subject, role, created_at) VALUES (%s, 'e', 'tenant', 0)",
                ("e" * 64,),
            )
    assert raw.info.transaction_status == 0  # idle: rolled back as it went back to the pool
    assert _tokens(store) == 0


@contextmanager
def commit_write_of(rows: list[dict]) -> Iterator[str]:
    """A commit part writing ``rows`` into ``tokens`` for the sessions flagged with the key it gives (and no other)."""
    flag = f"test_commit_write_{id(rows)}"

    def part(session) -> list:
        return [(insert(TokenRow.__table__), rows)] if session.info.get(flag) else []

    commit_writes.add(part)
    try:
        yield flag
    finally:
        commit_writes._PARTS.remove(part)


def _token_row(name: str) -> dict:
    return {"token_hash": name * 64, "subject": name, "role": "tenant", "created_at": 0.0, "name": "t"}


def test_commit_writes_that_fail_undo_the_transaction_they_were_to_commit(store):
    """The COMMIT rides on the commit's writes (``pg_round_trips.commit_with``): if they fail, nothing of the transaction
    stays, the flushed rows before them included."""
    with commit_write_of([_token_row("x")] * 2) as flag:  # the same key twice
        with pytest.raises(Exception, match="duplicate key"):
            with store.lock("test:begin") as session:
                session.info[flag] = True
                session.add(_token("f"))
        with store.lock("test:begin") as session:  # the next transaction on the pool's connections is clean
            session.add(_token("g"))
    with store.engine.connect() as conn:
        assert conn.execute(select(TokenRow.subject)).scalars().all() == ["g"]


def test_commit_writes_carry_the_commit_and_it_holds(store):
    sent: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    with commit_write_of([_token_row("h")]) as flag:
        with store.lock("test:begin") as session:
            session.info[flag] = True
            session.add(_token("i"))
    assert sent[-1].endswith(";COMMIT")
    with store.engine.connect() as conn:
        assert sorted(conn.execute(select(TokenRow.subject)).scalars()) == ["h", "i"]
