"""The audit trail and named tokens: rows written with the actions, the hash chain verified (API, CLI on the
database), tampering found, named tokens issued/listed/revoked, replicas appending to one linear chain."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from operators.control_plane import audit
from operators.control_plane.audit import AuditKind
from operators.control_plane.db.store import Store
from testbed.client import TestbedClient, TestbedError

ALICE = "changwon-precision"
BOB = "gimhae-robotics"
CLI = [sys.executable, "-m", "testbed.cli"]


def together(work, calls: list[tuple]) -> list[Exception]:
    """Run ``work(*args)`` for each of ``calls`` in a thread of its own, all at once; the errors they raised."""
    errors: list[Exception] = []

    def run(*args) -> None:
        try:
            work(*args)
        except Exception as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=args) for args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def kinds(entries) -> list[str]:
    return [e.kind for e in entries]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_admissions_refusals_and_tokens_are_audited_in_one_verified_chain(noop_plane):
    operator = noop_plane.client("operator")
    alice = noop_plane.client(ALICE)
    job = alice.submit({"entrypoint": "true", "cpus": 1})
    with pytest.raises(TestbedError):
        alice.submit({"entrypoint": "true", "cpus": 99})  # beyond the quota: refused, with its reason

    admitted = list(operator.iter_audit(kind=AuditKind.JOB_ADMITTED))
    assert [(e.tenant, e.job_id, e.actor) for e in admitted] == [(ALICE, job.id, f"{ALICE}:default")]
    [refused] = operator.iter_audit(kind=AuditKind.JOB_REFUSED)
    assert (
        refused.tenant == ALICE
        and refused.detail["error"] == "quota_exceeded"
        and "99 CPUs" in refused.detail["reason"]
    )
    # first start: each tenant's grant recorded (and the stack's prices and budget), tokens issued at bootstrap
    grants = list(operator.iter_audit(kind=AuditKind.GRANT_CHANGED))
    assert {e.tenant for e in grants} == {t.id for t in noop_plane.plane.stack.tenants}
    assert all(e.detail["before"] is None and e.detail["after"]["krw"] for e in grants)
    assert len(list(operator.iter_audit(kind="token."))) == 7  # five tenants, the operator and the program office

    # paging and filters
    everything = list(operator.iter_audit())
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    page = operator.audit(limit=3)
    assert len(page.entries) == 3 and page.next_cursor == "3"
    assert all(e.tenant == ALICE for e in operator.iter_audit(tenant=ALICE))
    assert list(operator.iter_audit(since=everything[-1].at + 1)) == []

    verified = operator.audit_verify(expect_head=everything[-1].hash)  # the sync may have appended since
    assert verified.ok and verified.rows >= len(everything)

    # tenants never read the audit trail
    with pytest.raises(TestbedError) as err:
        alice.audit()
    assert err.value.status_code == 403


def test_a_restart_records_only_what_changed_in_the_stack_files_money(noop_plane, tmp_path):
    from tests.conftest import make_noop_app

    plane = noop_plane.plane
    before = len(audit.list_entries(plane.store, kind="grant.", limit=1000))
    again = make_noop_app(noop_plane.home, sync=False)  # same stack file: nothing new
    again.state.plane.store.close()
    assert len(audit.list_entries(plane.store, kind="grant.", limit=1000)) == before

    text = Path(plane.settings.stack_file).read_text()
    changed = tmp_path / "Pulumi.gyeongnam.yaml"
    changed.write_text(text.replace("krw: 180000000", "krw: 190000000", 1))
    again = make_noop_app(noop_plane.home, stack_file=changed, sync=False)
    try:
        [row] = audit.list_entries(plane.store, kind=AuditKind.GRANT_CHANGED, after_seq=0, limit=1000)[before:]
        detail = json.loads(row.detail)
        assert row.tenant == ALICE and (detail["before"]["krw"], detail["after"]["krw"]) == (180000000, 190000000)
        # a reload of the amended file (the running control plane) records the next change too, once
        changed.write_text(text.replace("krw: 180000000", "krw: 200000000", 1))
        assert again.state.plane.reload_stack() == [f"grant of {ALICE} amended"]
        assert again.state.plane.reload_stack() == []
        rows = audit.list_entries(plane.store, kind=AuditKind.GRANT_CHANGED, after_seq=row.seq, limit=1000)
        assert [(r.tenant, json.loads(r.detail)["after"]["krw"]) for r in rows] == [(ALICE, 200000000)]
    finally:
        again.state.plane.store.close()
    assert audit.verify(plane.store).ok


def test_named_tokens_are_issued_listed_revoked_and_still_named_after(noop_plane):
    operator = noop_plane.client("operator")
    issued = operator.rotate_token(ALICE, name="kim")
    assert issued.name == "kim" and issued.token.startswith("tbt_")
    lee = operator.rotate_token(ALICE, name="lee").token
    kim = TestbedClient(noop_plane.url, issued.token)
    job = kim.submit({"entrypoint": "true", "cpus": 1})
    assert kim.get_job(job.id).tenant == ALICE  # a named token acts as its company
    assert noop_plane.client(ALICE).list_jobs().jobs  # the default token still works

    listed = {t.name: t for t in operator.list_tokens(ALICE).tokens}
    assert set(listed) == {"default", "kim", "lee"} and all(t.active for t in listed.values())
    assert issued.token not in json.dumps(operator.list_tokens(ALICE).model_dump())

    operator.revoke_token(ALICE, "kim")
    with pytest.raises(TestbedError) as err:
        kim.list_jobs()
    assert err.value.status_code == 401  # a revoked token stops working at once
    assert TestbedClient(noop_plane.url, lee).list_jobs().jobs  # the company's other tokens do not
    listed = {t.name: t for t in operator.list_tokens(ALICE).tokens}
    assert not listed["kim"].active and listed["kim"].revoked_at and listed["lee"].active

    # its earlier action still names it; the issue and the revocation name the operator who did them
    [admitted] = operator.iter_audit(kind=AuditKind.JOB_ADMITTED)
    assert (admitted.job_id, admitted.actor) == (job.id, f"{ALICE}:kim")
    token_rows = [(e.kind, e.detail["name"], e.actor) for e in operator.iter_audit(tenant=ALICE, kind="token.")]
    assert token_rows[-3:] == [
        (AuditKind.TOKEN_ISSUED, "kim", "operator:default"),
        (AuditKind.TOKEN_ISSUED, "lee", "operator:default"),
        (AuditKind.TOKEN_REVOKED, "kim", "operator:default"),
    ]
    # re-issuing a name is a rotation: the old token of that name stops working
    new_lee = operator.rotate_token(ALICE, name="lee").token
    with pytest.raises(TestbedError):
        TestbedClient(noop_plane.url, lee).list_jobs()
    assert TestbedClient(noop_plane.url, new_lee).list_jobs().jobs
    assert list(operator.iter_audit(kind=AuditKind.TOKEN_ROTATED))[-1].detail["name"] == "lee"

    # only the operator manages tokens; names are checked; revoking twice is a 404
    alice = noop_plane.client(ALICE)
    for call in (
        lambda: alice.rotate_token(ALICE, name="x"),
        lambda: alice.list_tokens(ALICE),
        lambda: alice.revoke_token(ALICE, "lee"),
    ):
        with pytest.raises(TestbedError) as err:
            call()
        assert err.value.status_code == 403
    with pytest.raises(TestbedError) as err:
        operator.rotate_token(ALICE, name="bad name!")
    assert err.value.status_code == 422
    with pytest.raises(TestbedError) as err:
        operator.revoke_token(ALICE, "kim")
    assert err.value.status_code == 404
    assert operator.audit_verify().ok


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_cli_manages_named_tokens(noop_plane):
    op = ["--url", noop_plane.url, "--token", noop_plane.token("operator")]
    done = cli("tenants", "token", BOB, "--name", "park", *op)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert TestbedClient(noop_plane.url, token).list_jobs().jobs == []
    listed = cli("tenants", "tokens", BOB, "--json", *op)
    assert {t["name"] for t in json.loads(listed.stdout)["tokens"]} == {"default", "park"}
    done = cli("tenants", "token", BOB, "--revoke", "park", *op)
    assert done.returncode == 0 and "revoked token 'park'" in done.stderr, done.stderr
    with pytest.raises(TestbedError):
        TestbedClient(noop_plane.url, token).list_jobs()


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
@pytest.mark.parametrize("tamper", ["edit", "delete", "delete_last"])
def test_a_tampered_or_deleted_audit_row_is_found(noop_plane, tamper, capsys):
    alice = noop_plane.client(ALICE)
    for _ in range(3):  # ended (charged and released) before the trail is read: nothing appends meanwhile
        assert alice.wait(alice.submit({"entrypoint": "true", "cpus": 1}).id, timeout=30).status == "SUCCEEDED"
    db = noop_plane.home / "cp.db"
    url = f"sqlite:///{db}"

    def verify_database(*extra: str) -> tuple[int, dict]:
        """What `testbed audit verify --database-url URL` runs (in this process: the CLI's subprocess is slow)."""
        capsys.readouterr()
        code = audit.main(["--database-url", url, *extra])
        return code, json.loads(capsys.readouterr().out)

    code, result = verify_database()
    assert code == 0 and result["ok"], result
    head = result["head_hash"]
    with sqlite3.connect(db) as conn:
        last = conn.execute("select max(seq) from audit_log").fetchone()[0]
        if tamper == "edit":  # someone rewrites who acted on row 5 (keeping its hash)
            conn.execute("update audit_log set actor = 'nobody:default' where seq = 5")
        elif tamper == "delete":
            conn.execute("delete from audit_log where seq = 4")
        else:  # the newest row removed and the head pointer moved back with it
            prev = conn.execute("select hash from audit_log where seq = ?", (last - 1,)).fetchone()[0]
            conn.execute("delete from audit_log where seq = ?", (last,))
            conn.execute("update audit_head set seq = ?, hash = ?", (last - 1, prev))
    expected = {
        "edit": (5, "its content does not match its hash (edited)"),
        "delete": (5, "rows 4..4 are missing"),
        "delete_last": (None, "no row has the expected hash"),
    }[tamper]
    code, result = verify_database("--expect-head", head)
    assert code == 1 and not result["ok"]
    assert any((p["seq"], p["problem"][: len(expected[1])]) == expected for p in result["problems"]), result
    # the API finds the same
    verdict = noop_plane.client("operator").audit_verify(expect_head=head)
    assert not verdict.ok and any(p.problem.startswith(expected[1]) for p in verdict.problems)
    if tamper == "delete_last":  # without the kept head, a consistent head pointer hides a removed newest row
        assert noop_plane.client("operator").audit_verify().ok
    if tamper == "edit":  # the command itself: exit 3, one line per broken row
        done = cli("audit", "verify", "--database-url", url)
        assert done.returncode == 3 and "audit trail BROKEN" in done.stderr, (done.stdout, done.stderr)
        assert "row 5: its content does not match its hash (edited)" in done.stderr


def test_replicas_appending_together_make_one_linear_chain(postgres_url):
    """Two stores (two replicas' engines) append concurrently on PostgreSQL: seqs 1..N, each linked to the one before."""
    stores = [Store(postgres_url), Store(postgres_url, migrate=False)]

    def append(store: Store, who: int) -> None:
        for i in range(25):
            audit.record(store, AuditKind.JOB_REFUSED, tenant=ALICE, actor=f"replica-{who}", detail={"i": i})

    errors = together(append, [(store, n) for n, store in enumerate(stores) for _ in range(2)])
    try:
        assert not errors, errors
        result = audit.verify(stores[0])
        assert result.ok and result.rows == 100, result.problems
        assert {r.actor for r in audit.list_entries(stores[0], limit=200)} == {"replica-0", "replica-1"}
    finally:
        for store in stores:
            store.close()


def _inbox_count(store: Store) -> int:
    with store.read() as conn:
        return len(conn.execute(audit.AuditInboxRow.__table__.select()).all())


def test_recorded_rows_wait_in_the_inbox_survive_a_crash_and_are_chained_in_order(tmp_path):
    """A hook's rows go into the inbox in the transaction they record (a rollback leaves none), outlive the process
    that wrote them, and are linked into the chain oldest first, before a direct append and before any read."""
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    store = Store(url)
    with store.write_session() as s:
        audit.enqueue(
            s.connection(), [(AuditKind.JOB_ADMITTED, {"tenant": ALICE, "detail": {"i": i}}) for i in range(3)]
        )
    with pytest.raises(RuntimeError):
        with store.write_session() as s:
            audit.enqueue(s.connection(), [(AuditKind.JOB_ADMITTED, {"tenant": BOB, "detail": {"i": 9}})])
            raise RuntimeError("the action failed")
    with store.read() as conn:
        assert conn.execute(audit.AuditRow.__table__.select()).all() == []  # not chained yet
    assert _inbox_count(store) == 3
    store.close()  # the process ends before a drain: nothing is lost

    store = Store(url, migrate=False)
    try:
        audit.record(store, AuditKind.TOKEN_ISSUED, actor="operator")  # a direct append comes after what waited
        assert _inbox_count(store) == 0
        rows = audit.list_entries(store)
        assert [(r.seq, r.kind, json.loads(r.detail)) for r in rows] == [
            (1, AuditKind.JOB_ADMITTED, {"i": 0}),
            (2, AuditKind.JOB_ADMITTED, {"i": 1}),
            (3, AuditKind.JOB_ADMITTED, {"i": 2}),
            (4, AuditKind.TOKEN_ISSUED, {}),
        ]
        with store.write_session() as s:
            audit.enqueue(s.connection(), [(AuditKind.LEDGER_HOLD, {"tenant": ALICE})])
        result = audit.verify(store)  # drains first
        assert result.ok and result.rows == 5 and _inbox_count(store) == 0, result
    finally:
        store.close()


def test_replicas_recording_and_draining_together_make_one_linear_chain(postgres_url):
    """On PostgreSQL, two replicas' writers fill the inbox while both drain it and append directly: every row is
    chained exactly once, seqs 1..N each linked to the one before."""
    stores = [Store(postgres_url), Store(postgres_url, migrate=False)]

    def work(store: Store, who: int) -> None:
        for i in range(30):
            with store.write_session() as s:
                audit.enqueue(s.connection(), [(AuditKind.LEDGER_CHARGE, {"actor": f"r{who}", "detail": {"i": i}})])
            if i % 5 == 0:
                audit.drain(store)
            if i % 10 == 0:
                audit.record(store, AuditKind.JOB_REFUSED, actor=f"r{who}", detail={"i": i})

    errors = together(work, [(stores[n % 2], n) for n in range(4)])
    try:
        assert not errors, errors
        result = audit.verify(stores[1])
        assert result.ok and result.rows == 4 * 30 + 4 * 3, result.problems
        charged = [
            (r.actor, json.loads(r.detail)["i"]) for r in audit.list_entries(stores[0], kind="ledger.", limit=500)
        ]
        assert sorted(charged) == sorted((f"r{n}", i) for n in range(4) for i in range(30))  # each once
    finally:
        for store in stores:
            store.close()


def test_audit_verify_on_postgresql_finds_an_edit(postgres_url, capsys):
    store = Store(postgres_url)
    try:
        for i in range(3):
            audit.record(store, AuditKind.TOKEN_ISSUED, detail={"i": i})
        assert audit.main(["--database-url", postgres_url]) == 0 and json.loads(capsys.readouterr().out)["ok"]
        with store.write_session() as s:
            s.execute(audit.AuditRow.__table__.update().where(audit.AuditRow.seq == 2).values(detail='{"i":7}'))
        assert audit.main(["--database-url", postgres_url]) == 1
        problems = json.loads(capsys.readouterr().out)["problems"]
        assert problems == [{"seq": 2, "problem": "its content does not match its hash (edited)"}]
    finally:
        store.close()


def test_the_audit_route_is_operator_only_and_validated(noop_plane):
    auth = {"Authorization": f"Bearer {noop_plane.token('operator')}"}
    assert httpx.get(f"{noop_plane.url}/v1/audit", params={"cursor": "x"}, headers=auth).status_code == 422
    assert httpx.get(f"{noop_plane.url}/v1/audit", params={"limit": 0}, headers=auth).status_code == 422
    tenant = {"Authorization": f"Bearer {noop_plane.token(ALICE)}"}
    assert httpx.get(f"{noop_plane.url}/v1/audit/verify", headers=tenant).status_code == 403


def test_ledger_entries_and_enforcement_stops_are_audited_naming_the_token(noop_plane):
    """A named token's job: its hold names the token (ledger and audit); stopped at its max run time by the
    reconciler: an enforcement.stop row with the reason, then its charge and release; the chain still verifies."""
    import time

    operator = noop_plane.client("operator")
    kim = TestbedClient(noop_plane.url, operator.rotate_token(ALICE, name="kim").token)
    job = kim.submit({"entrypoint": "sleep 30", "cpus": 1, "max_runtime_seconds": 1})
    deadline = time.time() + 30
    while kim.get_job(job.id).status not in ("STOPPED", "FAILED", "SUCCEEDED") and time.time() < deadline:
        time.sleep(0.2)
    assert kim.get_job(job.id).status == "STOPPED"
    entries = noop_plane.plane.money.entries(job_id=job.id)
    [hold] = [e for e in entries if e.kind == "hold"]
    assert hold.actor == f"{ALICE}:kim"
    rows = [e for e in operator.iter_audit(tenant=ALICE) if e.job_id == job.id]
    by_kind = {e.kind: e for e in rows}
    assert by_kind[AuditKind.LEDGER_HOLD].actor == f"{ALICE}:kim"
    assert by_kind[AuditKind.LEDGER_HOLD].detail["ledger_id"] == hold.id
    assert by_kind[AuditKind.JOB_ADMITTED].actor == f"{ALICE}:kim"
    assert "maximum run time" in by_kind[AuditKind.ENFORCEMENT_STOP].detail["reason"]
    assert by_kind[AuditKind.ENFORCEMENT_STOP].actor == "reconciler"
    assert AuditKind.LEDGER_RELEASE in by_kind
    # one audit row per ledger entry of the job
    assert sorted(e.detail["ledger_id"] for e in rows if e.kind.startswith("ledger.")) == sorted(e.id for e in entries)
    assert operator.audit_verify().ok
