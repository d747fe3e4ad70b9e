"""Hostile input and faults (issue 12), one regression test per finding, on the no-op backend over HTTP.

The local lifecycle findings (a split stack, a moved port, orphaned drivers, a slow ``down``, the
job environment) run on the real testbed in ``tests/embedded/test_local_testbed.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from operators.control_plane.backends.base import BackendJobInfo, PermanentBackendError
from operators.control_plane.observation import observed_changes
from tests.replicas import issued_token
from tests.serve import serve_in_thread
from tests.conftest import make_noop_app
from operators.control_plane.db.store import JobRow
from testbed.client import TestbedClient, TestbedError
from testbed.config import stack_file_for
from testbed.jobs import JobStatus
from testbed.limits import MAX_BODY_BYTES, MAX_ENTRYPOINT_CHARS, MAX_PAGE_SIZE

ALICE = "changwon-precision"  # quota: 8 CPUs, 2 GPUs, 64Gi
GIB = 2**30


@contextmanager
def plane(tmp_path: Path, sync: bool = True, **settings) -> Iterator[tuple[str, object]]:
    """A no-op control plane with extra settings, served on 127.0.0.1: (url, app)."""
    app = make_noop_app(tmp_path, stack_file_for("gyeongnam"), sync=sync, **settings)
    with serve_in_thread(app) as url:
        yield url, app


def refused(call, status: int, code: str) -> str:
    with pytest.raises(TestbedError) as err:
        call()
    assert (err.value.status_code, err.value.code) == (status, code), err.value
    return err.value.detail


def hold(app, job_id: str, status: JobStatus) -> None:
    """Make the no-op backend report ``status`` for a job (it otherwise succeeds at once)."""
    app.state.plane.backend.hold(job_id, status)


# -- a request names a host path --------------------------------------------------------------
def test_no_request_names_a_host_path(noop_plane):
    """Code travels as an uploaded package named by its digest; a folder or path of this machine is a 422."""
    client = noop_plane.client(ALICE)
    credentials = noop_plane.home / "credentials"
    for value in ("credentials", str(credentials), "../../credentials"):
        spec = {"entrypoint": "ls", "working_dir": value}
        assert "working_dir" in refused(lambda: client.submit(spec), 422, "invalid_spec")
        assert "body.code_package" in refused(
            lambda: client.submit(entrypoint="ls", code_package=value), 422, "invalid_spec"
        )
    assert client.list_jobs().jobs == []  # refusals left no record


# -- a job that can never run is admitted, cannot be stopped and is billed ------------------------
def test_a_job_larger_than_any_node_is_refused(tmp_path):
    with plane(tmp_path, capacity_cpus=4, capacity_gpus=1, capacity_memory=23 * GIB) as (url, _app):
        client = TestbedClient(url, issued_token(tmp_path, ALICE))
        detail = refused(lambda: client.submit(entrypoint="true", memory="40Gi"), 403, "capacity_exceeded")
        assert "40Gi memory (largest node: 23Gi)" in detail  # inside the 64Gi quota, beyond any node
        assert "2 GPUs (largest node: 1)" in refused(
            lambda: client.submit(entrypoint="true", gpus=2), 403, "capacity_exceeded"
        )
        assert client.list_jobs().jobs == []
        assert client.submit(entrypoint="true", memory="23Gi", cpus=4).status


def test_a_job_that_never_started_bills_nothing():
    row = JobRow(id="job-1", tenant=ALICE, status="PENDING", started_at=None, last_seen_at=1000.0)
    # Ray's start_time is its submit time: a job that timed out waiting for resources never ran
    timed_out = BackendJobInfo(
        status=JobStatus.FAILED,
        start_time=100.0,
        end_time=1001.0,
        ran=False,
        message="Job supervisor actor failed to start within 900.0 seconds.",
    )
    changes = observed_changes(row, timed_out, now=1001.0)
    assert "started_at" not in changes and changes["ended_at"] == 1001.0
    # seen running: billed from midway between the last pending look and this one, not from submit
    running = observed_changes(row, BackendJobInfo(status=JobStatus.RUNNING, start_time=100.0), now=1000.2)
    assert running["started_at"] == pytest.approx(1000.1)
    # not watched closely (the control plane was down): from this look, never from the submit time
    late = observed_changes(row, BackendJobInfo(status=JobStatus.RUNNING, start_time=100.0), now=5000.0)
    assert late["started_at"] == 5000.0


def test_stop_works_in_every_state_and_says_what_it_did(noop_plane):
    app, client = noop_plane.app, noop_plane.client(ALICE)
    starting = client.submit(entrypoint="sleep 1", cpus=8)  # holds the whole CPU quota while it starts
    hold(app, starting.id, JobStatus.PENDING)
    queued = client.submit(entrypoint="true", cpus=1)
    assert queued.status == "PENDING" and queued.message.startswith("queued")
    stopped = client.stop(queued.id)
    assert (stopped.status, stopped.message) == ("STOPPED", "stopped while queued: it never reached the backend")
    stopped = client.stop(starting.id)
    assert stopped.status == "STOPPED" and stopped.message.startswith("stopped while starting")
    assert stopped.started_at is None  # never billed
    running = client.submit(entrypoint="sleep 9")
    hold(app, running.id, JobStatus.RUNNING)
    client.get_job(running.id)  # observed running
    assert client.stop(running.id).message == "stopping: the backend was asked to stop it"


# -- a write-locked database freezes the API ----------------------------------------------------
def test_a_locked_database_answers_503_fast_and_health_stays_fast(noop_plane):
    client = noop_plane.client(ALICE)
    client.list_jobs()  # token cached
    lock = sqlite3.connect(noop_plane.home / "cp.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        answers: dict[str, float] = {}

        def submit() -> None:
            started = time.monotonic()
            response = httpx.post(
                noop_plane.url + "/v1/jobs",
                json={"entrypoint": "true"},
                headers={"Authorization": f"Bearer {noop_plane.token(ALICE)}"},
                timeout=30,
            )
            answers["submit"] = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "database_unavailable" and response.headers["retry-after"]

        waiting = threading.Thread(target=submit)
        waiting.start()
        time.sleep(0.3)
        health = httpx.get(noop_plane.url + "/healthz", timeout=10).json()  # answers while the lock is held
        assert health["database"] == "busy" and health["status"] == "degraded"
        assert client.list_jobs().jobs == []  # reads go on meanwhile
        waiting.join(timeout=30)
        assert answers["submit"] < 8.0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert httpx.get(noop_plane.url + "/healthz").json()["database"] == "ok"
    assert client.submit(entrypoint="true").status in ("PENDING", "RUNNING", "SUCCEEDED")


# -- no size limits -------------------------------------------------------------------------------
def test_oversized_bodies_and_fields_are_refused(noop_plane):
    auth = {"Authorization": f"Bearer {noop_plane.token(ALICE)}"}
    huge = httpx.post(noop_plane.url + "/v1/jobs", json={"entrypoint": "x" * 10_000_000}, headers=auth, timeout=30)
    assert huge.status_code == 413 and huge.json()["error"] == "too_large"
    chunked = httpx.post(
        noop_plane.url + "/v1/jobs", content=iter([b"{" + b" " * (MAX_BODY_BYTES + 10), b"}"]), headers=auth, timeout=30
    )
    assert chunked.status_code == 413
    client = noop_plane.client(ALICE)
    for fields, where in (
        ({"entrypoint": "x" * (MAX_ENTRYPOINT_CHARS + 1)}, "body.entrypoint"),
        ({"entrypoint": "x", "env": {"A": "v" * 5000}}, "body.env.A"),
        ({"template": "smoke", "params": {"seed": "1" * 2000}}, "body.params.seed"),
    ):
        detail = refused(lambda: client.submit(fields), 422, "invalid_spec")
        assert where in detail and len(detail) < 1000  # the value is not echoed back whole


def test_an_entrypoint_is_stored_once(noop_plane):
    job = noop_plane.client(ALICE).submit(entrypoint="echo " + "x" * 4000)
    row = noop_plane.plane.store.get_job(job.id)
    assert len(row.entrypoint) == 4005 and "entrypoint" not in row.spec


def test_every_list_is_paged_with_a_cursor(noop_plane):
    client = noop_plane.client(ALICE)
    ids = [client.submit(entrypoint=f"echo {i}").id for i in range(7)]
    first = client.list_jobs(limit=3)
    assert [j.id for j in first.jobs] == ids[::-1][:3] and first.next_cursor
    assert [j.id for j in client.list_jobs(limit=3, cursor=first.next_cursor).jobs] == ids[::-1][3:6]
    assert [j.id for j in client.iter_jobs(page_size=2)] == ids[::-1]
    assert client.list_jobs().next_cursor is None  # the default page (50) holds all seven
    assert refused(lambda: client.list_jobs(limit=MAX_PAGE_SIZE + 1), 422, "invalid_spec")
    assert "cursor" in refused(lambda: client.list_jobs(cursor="not-a-cursor"), 422, "invalid_spec")


def test_a_tenant_can_park_only_so_many_queued_jobs(tmp_path):
    with plane(tmp_path, sync=False, max_queued_jobs_per_tenant=2) as (url, app):
        app.state.plane.dispatcher.dispatch = lambda row: row  # nothing leaves the queue
        client = TestbedClient(url, issued_token(tmp_path, ALICE))
        queued = [client.submit(entrypoint="true") for _ in range(2)]
        assert "max_queued_jobs_per_tenant: 2" in refused(lambda: client.submit(entrypoint="true"), 403, "queue_full")
        client.stop(queued[0].id)
        assert client.submit(entrypoint="true").status == "PENDING"


def test_a_permanent_backend_refusal_fails_the_job_once(noop_plane, monkeypatch):
    calls = []

    def refuse(request):
        calls.append(request.job_id)
        raise PermanentBackendError("Ray refused job: ValueError: runtime_env is invalid")

    monkeypatch.setattr(noop_plane.plane.backend, "submit", refuse)
    client = noop_plane.client(ALICE)
    job = client.submit(entrypoint="true")
    assert (
        job.status == "FAILED"
        and job.message == "refused by the backend: Ray refused job: ValueError: runtime_env is invalid"
    )
    for _ in range(2):  # two sync rounds: never sent again
        noop_plane.plane.dispatcher.sync_once()
    assert calls == [job.id] and client.get_job(job.id).started_at is None


# -- numbers that are not numbers --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('{"entrypoint": "x", "memory": 1e400}', "body.memory"),
        ('{"entrypoint": "x", "memory": "1ki"}', "body.memory"),
        ('{"entrypoint": "x", "memory": 1e300}', "body.memory"),
        ('{"entrypoint": "x", "cpus": 1e-9}', "body.cpus"),
        ('{"entrypoint": "x", "cpus": 1e400}', "body.cpus"),
        ('{"entrypoint": "x", "cpus": "2"}', "body.cpus"),
        ('{"entrypoint": "x", "gpus": 65}', "body.gpus"),
        ('{"template": "smoke", "params": {"lr": 1e400}}', "body.params.lr"),
    ],
)
def test_every_number_is_finite_and_in_range(noop_plane, body, where):
    response = httpx.post(
        noop_plane.url + "/v1/jobs",
        content=body,
        timeout=10,
        headers={"Authorization": f"Bearer {noop_plane.token(ALICE)}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_spec" and where in response.json()["detail"]


# -- /metrics is open ------------------------------------------------------------------------------
def test_metrics_needs_the_operator_token(noop_plane):
    url = noop_plane.url + "/metrics"
    assert httpx.get(url).status_code == 401
    tenant = httpx.get(url, headers={"Authorization": f"Bearer {noop_plane.token(ALICE)}"})
    assert tenant.status_code == 403 and tenant.json()["error"] == "forbidden"
    operator = httpx.get(url, headers={"Authorization": f"Bearer {noop_plane.token('operator')}"})
    assert operator.status_code == 200 and "testbed_tenant_info" in operator.text
    assert [t.tenant for t in noop_plane.client(ALICE).usage().tenants] == [ALICE]  # a tenant's own usage
