"""The audit trail: append-only, hash-chained rows in ``audit_log``, written in the transaction they record.

The rows the database layer writes for every admission, ledger entry and stop (:mod:`.audit_hooks`) go into
``audit_inbox`` in that transaction (:func:`enqueue`: one INSERT, no lock) and are linked into the chain in
batches by :func:`drain`: each sync round, before every read of the trail, and before any other append. A
busy control plane thus takes the chain's lock once per batch, not once per transaction (on PostgreSQL every
writer of every replica queued on it until its commit). Until drained (about a second), an inbox row is
durable but not yet hash-protected.

Each row holds ``seq`` (1, 2, 3 ...), the hash of the row before it (``prev_hash``; 64 zeros for the
first) and its own ``hash``: SHA-256 of the row's canonical JSON (:func:`canonical_json`: sorted keys,
no spaces, UTF-8). Appends are serialised in the database: the one ``audit_head`` row (the chain's
newest seq and hash) is read ``FOR UPDATE`` (PostgreSQL: a row lock held to commit; SQLite: the
database's single writer), so two replicas appending at once still make one linear chain, and the
unique ``seq`` makes a fork impossible even without the lock. :func:`verify` recomputes the chain
and finds a row edited, removed or inserted. The platform never updates or deletes these rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from typing import Any, Iterable

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from operators.control_plane.db.models import AuditHead, AuditInboxRow, AuditRow
from operators.control_plane.db.engine import DIALECT_INSERTS
from operators.control_plane.db.store import Store
from testbed.audit import AuditEntry, AuditProblem, AuditVerification

GENESIS_HASH = "0" * 64
HEAD_ID = 1


class AuditKind:
    """The kinds of audit rows (a string column; these are the values the platform writes)."""

    JOB_ADMITTED = "job.admitted"
    JOB_REFUSED = "job.refused"
    LEDGER_HOLD = "ledger.hold"
    LEDGER_CHARGE = "ledger.charge"
    LEDGER_RELEASE = "ledger.release"
    LEDGER_ADJUSTMENT = "ledger.adjustment"
    LEDGER_OPENING = "ledger.opening"
    ENFORCEMENT_STOP = "enforcement.stop"
    JOB_STOPPED = "job.stopped"
    TOKEN_ISSUED = "token.issued"
    TOKEN_ROTATED = "token.rotated"
    TOKEN_REVOKED = "token.revoked"
    GRANT_CHANGED = "grant.changed"
    PRICES_CHANGED = "prices.changed"
    BUDGET_CHANGED = "budget.changed"
    MONTH_CLOSED = "month.closed"
    TENANT_EXPORTED = "tenant.exported"
    TENANT_PURGED = "tenant.purged"


def canonical_json(value: Any) -> str:
    """The one text of a JSON value that is hashed: sorted keys, no spaces, UTF-8 (not \\u-escaped)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def row_hash(
    seq: int,
    at: float,
    kind: str,
    tenant: str | None,
    actor: str | None,
    job_id: str | None,
    detail: str,
    prev_hash: str,
) -> str:
    """SHA-256 of the row's canonical JSON (its ``detail`` is already canonical JSON text)."""
    body = {
        "seq": seq,
        "at": at,
        "kind": kind,
        "tenant": tenant,
        "actor": actor,
        "job_id": job_id,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _hash_of(row: AuditRow) -> str:
    return row_hash(row.seq, row.at, row.kind, row.tenant, row.actor, row.job_id, row.detail, row.prev_hash)


def append(
    session: Session | Connection,
    kind: str,
    *,
    tenant: str | None = None,
    actor: str | None = None,
    job_id: str | None = None,
    detail: dict[str, Any] | None = None,
    at: float | None = None,
) -> None:
    """Append one row in the transaction of ``session``: it commits or rolls back with the action it records."""
    fields = {"tenant": tenant, "actor": actor, "job_id": job_id, "detail": detail, "at": at}
    append_many(session, [(kind, fields)])


Action = tuple[str, dict[str, Any]]  # (kind, {tenant, actor, job_id, detail, at})


def _unchained(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """An action as a row without its place in the chain (what ``audit_inbox`` holds)."""
    at = fields.get("at")
    return {
        "at": time.time() if at is None else float(at),
        "kind": kind,
        "tenant": fields.get("tenant"),
        "actor": fields.get("actor"),
        "job_id": fields.get("job_id"),
        "detail": canonical_json(fields.get("detail") or {}),
    }


def append_many(session: Session | Connection, actions: list[Action]) -> list[AuditEntry]:
    """Append rows in order, linked into the chain now, in the transaction of ``session``: the head is locked,
    the inbox drained first (what was recorded before comes first), and the head moved once for all of them."""
    if not actions:
        return []
    conn = session.connection() if isinstance(session, Session) else session
    seq, prev_hash = _drain_locked(conn)
    rows = _link(seq, prev_hash, [_unchained(kind, fields) for kind, fields in actions])
    conn.execute(insert(AuditRow.__table__), rows)
    conn.execute(_HEAD_MOVE, {"new_seq": rows[-1]["seq"], "new_hash": rows[-1]["hash"]})
    return [AuditEntry(**{**row, "detail": json.loads(row["detail"])}) for row in rows]


def enqueue(conn: Connection, actions: list[Action]) -> None:
    """Record actions in ``conn``'s transaction, to be linked into the chain by :func:`drain` (no lock taken)."""
    if actions:
        conn.execute(*inbox_write(actions))


_INBOX_INSERT = insert(AuditInboxRow.__table__)


def inbox_write(actions: list[Action]) -> tuple[Insert, list[dict[str, Any]]]:
    """The inbox rows of ``actions`` (what :func:`enqueue` writes), as a statement and its rows."""
    return _INBOX_INSERT, [_unchained(kind, fields) for kind, fields in actions]


DRAIN_BATCH = 256  # inbox rows linked per transaction: a short hold of the writer each


def drain(store: Store) -> int:
    """Link every committed inbox row into the chain, oldest first (in transactions of up to ``DRAIN_BATCH``
    rows); how many. Cheap when the inbox is empty (one read, no lock)."""
    moved = 0
    while True:
        with store.read() as conn:
            if conn.execute(_INBOX_ANY).first() is None:
                return moved
        with store.write_session() as session:
            conn = session.connection()
            _, count = _drain_in(conn, DRAIN_BATCH)
        moved += count
        if count < DRAIN_BATCH:
            return moved


def _drain_locked(conn: Connection) -> tuple[int, str]:
    """Lock the head, link all the inbox rows this transaction sees; the head's (seq, hash) after them."""
    while True:
        head, count = _drain_in(conn, DRAIN_BATCH)
        if count < DRAIN_BATCH:
            return head


def _drain_in(conn: Connection, batch: int) -> tuple[tuple[int, str], int]:
    """Lock the head and link up to ``batch`` inbox rows (oldest first) in ``conn``'s transaction; (the head
    after them, how many)."""
    head = conn.execute(_HEAD_LOCKED).first()  # locked to commit: one appender at a time
    if head is None:  # the first append ever: make the head (safe between replicas), then lock it
        conn.execute(_head_ensure(conn.dialect.name))
        head = conn.execute(_HEAD_LOCKED).one()
    inbox = AuditInboxRow.__table__
    pending = conn.execute(select(inbox).order_by(inbox.c.id).limit(batch)).mappings().all()
    if not pending:
        return (head[0], head[1]), 0
    rows = _link(head[0], head[1], [{k: v for k, v in row.items() if k != "id"} for row in pending])
    conn.execute(insert(AuditRow.__table__), rows)
    conn.execute(inbox.delete().where(inbox.c.id.in_([row["id"] for row in pending])))
    conn.execute(_HEAD_MOVE, {"new_seq": rows[-1]["seq"], "new_hash": rows[-1]["hash"]})
    return (rows[-1]["seq"], rows[-1]["hash"]), len(pending)


def _link(seq: int, prev_hash: str, unchained: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows after the head (``seq``, ``prev_hash``), in order: each numbered, linked to the one before, hashed."""
    rows = []
    for values in unchained:
        seq += 1
        row = {**values, "seq": seq, "prev_hash": prev_hash}
        row["hash"] = prev_hash = row_hash(**row)
        rows.append(row)
    return rows


@lru_cache(maxsize=None)
def _head_ensure(dialect: str) -> Any:
    return (
        DIALECT_INSERTS[dialect](AuditHead.__table__)
        .values(id=HEAD_ID, seq=0, hash=GENESIS_HASH)
        .on_conflict_do_nothing(index_elements=["id"])
    )


_HEAD = AuditHead.__table__
_HEAD_LOCKED = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ID).with_for_update()
_INBOX_ANY = select(AuditInboxRow.__table__.c.id).limit(1)
_HEAD_MOVE = update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))


def record(store: Store, kind: str, **fields: Any) -> None:
    """Append one row in a transaction of its own (an action that writes nothing else, e.g. a refusal)."""
    with store.write_session() as session:
        append(session, kind, **fields)


def entry_view(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at=row.at,
        kind=row.kind,
        tenant=row.tenant,
        actor=row.actor,
        job_id=row.job_id,
        detail=json.loads(row.detail),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def list_entries(
    store: Store,
    *,
    tenant: str | None = None,
    kind: str | None = None,
    since: float | None = None,
    until: float | None = None,
    after_seq: int | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """Oldest first (the inbox drained first); ``after_seq`` (the last seq of the previous page) starts the next
    page."""
    drain(store)
    query = select(AuditRow).order_by(AuditRow.seq)
    if tenant is not None:
        query = query.where(AuditRow.tenant == tenant)
    if kind is not None:
        query = (
            query.where(AuditRow.kind == kind)
            if not kind.endswith(".")
            else query.where(AuditRow.kind.startswith(kind))
        )
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if until is not None:
        query = query.where(AuditRow.at < until)
    if after_seq is not None:
        query = query.where(AuditRow.seq > after_seq)
    with store.session() as s:
        return list(s.scalars(query.limit(limit)))


def last_of(session: Session, kind: str, tenant: str | None = None) -> AuditRow | None:
    """The newest row of a kind (and tenant)."""
    query = select(AuditRow).where(AuditRow.kind == kind)
    if tenant is not None:
        query = query.where(AuditRow.tenant == tenant)
    return session.scalars(query.order_by(AuditRow.seq.desc()).limit(1)).first()


def verify_rows(
    rows: Iterable[AuditRow], head: tuple[int, str] | None, expect_head: str | None = None
) -> AuditVerification:
    """Walk the chain in seq order: every hash recomputes, links to the row before, no seq is missing, and
    the head (``audit_head``, and ``expect_head`` if an operator kept one) names the newest row."""
    problems: list[AuditProblem] = []
    prev_hash, expected_seq, count, last_seq = GENESIS_HASH, 1, 0, 0
    seen_hashes: set[str] = set()
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            problems.append(
                AuditProblem(
                    seq=row.seq,
                    problem=f"rows {expected_seq}..{row.seq - 1} are missing"
                    if row.seq > expected_seq
                    else f"seq {row.seq} is out of order",
                )
            )
        if row.prev_hash != prev_hash:
            problems.append(AuditProblem(seq=row.seq, problem="prev_hash does not match the row before it"))
        if _hash_of(row) != row.hash:
            problems.append(AuditProblem(seq=row.seq, problem="its content does not match its hash (edited)"))
        seen_hashes.add(row.hash)
        prev_hash, expected_seq, last_seq = row.hash, row.seq + 1, row.seq
    if head is not None and (head[0], head[1]) != (last_seq, prev_hash):
        problems.append(
            AuditProblem(
                seq=head[0],
                problem=f"the chain's head names row {head[0]} ({head[1][:12]}...), "
                f"but the newest row is {last_seq}: rows at the end were removed or the head edited",
            )
        )
    if expect_head is not None and expect_head not in seen_hashes:
        problems.append(
            AuditProblem(
                seq=None,
                problem=f"no row has the expected hash {expect_head[:12]}...: "
                "rows were removed or rewritten since that head was recorded",
            )
        )
    return AuditVerification(ok=not problems, rows=count, head_seq=last_seq, head_hash=prev_hash, problems=problems)


def verify(
    store: Store, expect_head: str | None = None, batch: int = 5000, drain_first: bool = True
) -> AuditVerification:
    """Verify the whole chain in the database (read in batches, in one transaction), the inbox drained into it
    first (unless ``drain_first`` is false: a database whose schema has no inbox yet)."""
    if drain_first:
        drain(store)
    with store.session() as s:
        head_row = s.get(AuditHead, HEAD_ID)
        head = (head_row.seq, head_row.hash) if head_row is not None else (0, GENESIS_HASH)

        def rows() -> Iterable[AuditRow]:
            after = 0
            while True:
                page = list(s.scalars(select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(batch)))
                yield from page
                if len(page) < batch:
                    return
                after = page[-1].seq
                s.expunge_all()

        return verify_rows(rows(), head, expect_head)


def main(argv: list[str] | None = None) -> int:
    """``python -m operators.control_plane.audit (--settings FILE | --database-url URL) [--expect-head HASH]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="testbed audit verify", description="Verify the audit trail's hash chain.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--settings", help="the control plane's settings JSON (its database_url)")
    where.add_argument("--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg2://user:pw@host/db")
    parser.add_argument("--expect-head", help="a head hash printed by an earlier verify: it must still be in the chain")
    args = parser.parse_args(argv)
    try:
        url = args.database_url
        if args.settings:
            from testbed.settings import ControlPlaneSettings

            url = ControlPlaneSettings.from_file(args.settings).database_url
        store = Store(url, migrate=False)
        try:
            has_inbox = sa_inspect(store.engine).has_table(AuditInboxRow.__tablename__)  # 0009 on
            result = verify(store, expect_head=args.expect_head, drain_first=has_inbox)
        finally:
            store.close()
    except Exception as exc:  # one line: a bad URL, an unreachable server, a database without the audit table
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        print(f"cannot verify the audit trail: {text[:500]}", file=sys.stderr)
        return 2
    print(result.model_dump_json())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
