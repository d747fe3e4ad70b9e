"""Control-plane API over real HTTP with the no-op backend: auth, isolation, validation, quota."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from operators.control_plane.backends.base import NO_RESOURCES, Resources
from operators.control_plane.launch import launch_request
from testbed.client import TestbedClient, TestbedError
from testbed.jobs import Job
from tests.replicas import issued_token

ALICE = "changwon-precision"  # quota: 8 CPUs, 2 GPUs, 64Gi
BOB = "gimhae-robotics"


def submit_ok(client: TestbedClient, **fields) -> Job:
    job = client.submit({"entrypoint": "python -c 'print(1)'", **fields})
    assert job.id.startswith("job-")
    return job


def assert_error_body(response: httpx.Response, status: int, code: str) -> str:
    """Every error answer is ``{"error": code, "detail": text}`` (testbed.errors.ErrorBody)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == code and body["detail"], body
    return body["detail"]


def test_missing_or_bad_token_is_401(noop_plane):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        for method, path in (
            ("GET", "/v1/jobs"),
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs/job-x"),
            ("GET", "/v1/usage"),
        ):
            response = httpx.request(method, noop_plane.url + path, headers=headers, json={})
            assert_error_body(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"


def test_every_error_answer_has_one_shape(noop_plane):
    auth = {"Authorization": f"Bearer {noop_plane.token(ALICE)}"}
    url = noop_plane.url
    assert "job-missing" in assert_error_body(httpx.get(f"{url}/v1/jobs/job-missing", headers=auth), 404, "not_found")
    assert_error_body(httpx.get(f"{url}/v1/usage", params={"tenant": BOB}, headers=auth), 404, "not_found")
    assert_error_body(httpx.get(f"{url}/v1/no-such-route", headers=auth), 404, "not_found")
    assert_error_body(httpx.delete(f"{url}/v1/jobs", headers=auth), 405, "method_not_allowed")
    assert_error_body(httpx.get(f"{url}/v1/jobs", params={"limit": 0}, headers=auth), 422, "invalid_spec")
    assert_error_body(
        httpx.post(f"{url}/v1/jobs", json={"entrypoint": "x", "cpus": 99}, headers=auth), 403, "quota_exceeded"
    )
    assert_error_body(httpx.post(f"{url}/v1/tenants/{BOB}/token", headers=auth), 403, "forbidden")


def test_openapi_declares_the_error_body(noop_plane):
    spec = httpx.get(noop_plane.url + "/openapi.json").json()
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "detail"}
    declared = {
        ("/v1/jobs", "post"): {"401", "403", "422"},
        ("/v1/jobs/{job_id}", "get"): {"401", "404"},
        ("/v1/jobs/{job_id}/stop", "post"): {"401", "404", "503"},
        ("/v1/tenants/{subject}/token", "post"): {"401", "403", "404"},
        ("/v1/usage", "get"): {"401", "404", "422"},
    }
    for (path, method), statuses in declared.items():
        responses = spec["paths"][path][method]["responses"]
        for status in statuses:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)


def test_health_and_openapi_are_served(noop_plane):
    health = httpx.get(noop_plane.url + "/healthz").json()
    assert isinstance(health.pop("reconciler"), bool)  # true once it holds the lease and has synced
    assert health == {
        "status": "ok",
        "region": "gyeongnam",
        "backend": "noop",
        "backend_healthy": True,
        "database": "ok",
        "mlflow": "unavailable",
    }  # this plane's tracking URI (port 1) answers nothing
    spec = httpx.get(noop_plane.url + "/openapi.json").json()
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/logs", "/v1/jobs/{job_id}/stop", "/healthz"):
        assert path in spec["paths"]


def test_tokens_are_stored_hashed(noop_plane):
    token = noop_plane.token(ALICE)
    rows = sqlite3.connect(noop_plane.home / "cp.db").execute("select token_hash, subject from tokens").fetchall()
    assert len(rows) == 7  # five tenants, the operator and the program office
    assert all(token not in row[0] for row in rows)
    dump = (noop_plane.home / "cp.db").read_bytes()
    assert token.encode() not in dump


def test_tenant_sees_only_its_own_jobs(noop_plane):
    alice, bob = noop_plane.client(ALICE), noop_plane.client(BOB)
    job = submit_ok(alice)
    submit_ok(bob)
    assert [j.tenant for j in alice.list_jobs().jobs] == [ALICE]
    assert [j.tenant for j in bob.list_jobs().jobs] == [BOB]
    for call in (bob.get_job, bob.logs, bob.stop):
        with pytest.raises(TestbedError) as err:
            call(job.id)
        assert err.value.status_code == 404
        assert ALICE not in str(err.value)
    # the same 404 as a job that does not exist: no way to probe other tenants' ids
    with pytest.raises(TestbedError) as missing:
        bob.get_job("job-doesnotexist")
    assert missing.value.status_code == 404
    operator = noop_plane.client("operator")
    assert {j.tenant for j in operator.list_jobs().jobs} == {ALICE, BOB}
    assert operator.get_job(job.id).tenant == ALICE


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"cpus": -1, "entrypoint": "x"}, "body.cpus: Input should be greater than or equal to 0.01 (got -1)"),
        ({}, "give exactly one of 'entrypoint'"),
        ({"entrypoint": "x", "template": "smoke"}, "give exactly one of 'entrypoint'"),
        ({"entrypoint": "x", "memory": "lots"}, "memory must be a quantity"),
        ({"entrypoint": "x", "env": {"TESTBED_TENANT": "other"}}, "reserved"),
        ({"entrypoint": "x", "bogus": 1}, "body.bogus: is not a known key"),
        ({"template": "no-such-template"}, "unknown template 'no-such-template'"),
        (
            {"template": "smoke", "params": {"epochs": "many"}},
            "param 'epochs': Input should be a valid integer (got 'many')",
        ),
        (
            {"template": "smoke", "params": {"nope": 1}},
            "param 'nope': is not a known key (its params: epochs, lr, seed)",
        ),
    ],
)
def test_bad_spec_is_422_with_a_readable_reason(noop_plane, spec, needle):
    client = noop_plane.client(ALICE)
    with pytest.raises(TestbedError) as err:
        client.submit(spec)
    assert err.value.status_code == 422
    assert needle in str(err.value)
    assert client.list_jobs().jobs == []  # nothing half-made


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"cpus": 9}, "9 CPUs (quota 8)"),
        ({"gpus": 3}, "3 GPUs (quota 2)"),
        ({"memory": "65Gi"}, "65Gi memory (quota 64Gi)"),
    ],
)
def test_job_that_never_fits_the_quota_is_refused(noop_plane, fields, needle):
    client = noop_plane.client(ALICE)
    with pytest.raises(TestbedError) as err:
        client.submit({"entrypoint": "true", **fields})
    assert err.value.status_code == 403
    assert needle in str(err.value) and "can never fit" in str(err.value)
    assert client.list_jobs().jobs == []


def test_operator_cannot_submit(noop_plane):
    with pytest.raises(TestbedError) as err:
        submit_ok(noop_plane.client("operator"))
    assert err.value.status_code == 403


def test_job_object_shape_and_environment(noop_plane):
    client = noop_plane.client(ALICE)
    job = client.wait(submit_ok(client, name="exp1", cpus=2, gpus=1).id, timeout=10)
    assert job.status == "SUCCEEDED"
    assert job.experiment == f"{ALICE}/exp1"
    assert job.gpu_model == "l4"  # the tenant's pool
    assert job.started_at.endswith("Z") and job.ended_at.endswith("Z")
    plane = noop_plane.plane
    request = launch_request(plane.store.get_job(job.id), plane.settings)
    env = request.runtime_env.env_vars
    assert env["MLFLOW_EXPERIMENT_NAME"] == f"{ALICE}/exp1"
    assert env["TESTBED_TENANT"] == ALICE and env["TESTBED_REGION"] == "gyeongnam"
    assert env["TESTBED_JOB_ID"] == job.id
    assert (
        json.loads(env["TESTBED_RUN_TAGS"])
        == request.metadata
        == {"testbed.tenant": ALICE, "testbed.job_id": job.id, "testbed.region": "gyeongnam"}
    )
    # a command job: the driver reserves the whole budget, which the env repeats for the workload
    assert request.budget == request.driver == Resources(cpus=2, gpus=1, memory=2 * 2**30)
    assert (env["TESTBED_CPUS"], env["TESTBED_GPUS"], env["TESTBED_MEMORY_BYTES"]) == ("2", "1", str(2 * 2**30))


def test_template_job_driver_reserves_nothing(noop_plane):
    client = noop_plane.client(ALICE)
    job = client.submit({"template": "smoke", "cpus": 2, "memory": "3Gi"})
    plane = noop_plane.plane
    request = launch_request(plane.store.get_job(job.id), plane.settings)
    assert request.budget == Resources(cpus=2, gpus=0, memory=3 * 2**30)
    assert request.driver == NO_RESOURCES  # Ray Train workers reserve the budget themselves
    assert request.runtime_env.env_vars["TESTBED_CPUS"] == "2"


def test_token_rotation_by_operator_only(noop_plane):
    old = noop_plane.client(ALICE)
    with pytest.raises(TestbedError) as err:
        old.rotate_token(ALICE)
    assert err.value.status_code == 403
    new_token = noop_plane.client("operator").rotate_token(ALICE).token
    with pytest.raises(TestbedError) as err:
        old.list_jobs()
    assert err.value.status_code == 401
    assert TestbedClient(noop_plane.url, new_token).list_jobs().jobs == []


def test_queued_job_stops_without_running(noop_plane):
    plane = noop_plane.plane
    client = noop_plane.client(BOB)  # quota: 8 CPUs, max 4 running jobs
    # hold the tenant's whole CPU quota with a job the no-op backend keeps "running"
    from testbed.jobs import JobStatus

    first = submit_ok(client, cpus=8)
    plane.backend.hold(first.id, JobStatus.RUNNING)
    plane.store.update_job(first.id, status="RUNNING", ended_at=None)
    second = submit_ok(client, cpus=1)
    assert second.status == "PENDING" and "queued" in second.message
    stopped = client.stop(second.id)
    assert stopped.status == "STOPPED" and stopped.started_at is None


def _plane_with_grant(tmp_path, fiscal_period=None, **grant):
    """A no-op control plane whose stack gives every tenant the grant fields given."""
    import yaml

    from tests.serve import serve_in_thread
    from testbed.config import stack_file_for
    from tests.conftest import make_noop_app

    document = yaml.safe_load(stack_file_for("gyeongnam").read_text())
    for tenant in document["config"]["testbed:tenants"]:
        tenant["grant"].update(grant)
    if fiscal_period is not None:  # prices from the start of the fiscal period
        document["config"]["testbed:budget"]["fiscal_period"] = fiscal_period
        for price in document["config"]["testbed:prices"]:
            if price["effective_from"] == "2026-03-01":
                price["effective_from"] = fiscal_period["start"]
    stack_file = tmp_path / "Pulumi.gyeongnam.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    app = make_noop_app(tmp_path, stack_file=stack_file)
    return app, serve_in_thread(app)


def test_gpu_jobs_are_refused_once_the_grant_is_used_up(tmp_path):
    import time

    from operators.control_plane.db.store import JobRow

    app, server = _plane_with_grant(tmp_path, gpu_hours=1)
    plane = app.state.plane
    with server as url:
        client = TestbedClient(url, issued_token(tmp_path, ALICE))
        first = client.submit({"entrypoint": "true", "gpus": 1, "max_runtime_seconds": 600})
        assert first.hold_krw > 0 and first.max_runtime_seconds == 600
        # a job that held 2 GPUs for 30 minutes, charged when it ends: the whole 1 GPU-hour grant
        now = time.time()
        plane.store.add_job(
            JobRow(
                id="job-used-grant",
                tenant=ALICE,
                region="gyeongnam",
                name="x",
                experiment=f"{ALICE}/x",
                status="RUNNING",
                entrypoint="true",
                spec={"max_runtime_seconds": 3600},
                cpus=1,
                gpus=2,
                gpu_model="l4",
                memory_bytes=2**30,
                submitted_at=now - 1800,
                started_at=now - 1800,
                dispatched=True,
            )
        )
        plane.store.update_job("job-used-grant", status="SUCCEEDED", ended_at=now)
        with pytest.raises(TestbedError) as err:
            client.submit({"entrypoint": "true", "gpus": 1})
        assert err.value.status_code == 403 and err.value.code == "grant_exhausted"
        assert "has charged 1.00 + held" in str(err.value) and "of 1 granted GPU-hours" in str(err.value)
        assert client.submit({"entrypoint": "true"}).status  # CPU jobs do not draw on the GPU-hours
        assert {j.id for j in client.list_jobs().jobs} >= {first.id}
        assert len(client.list_jobs().jobs) == 3  # the refused job left no record


def test_jobs_are_refused_outside_the_grant_period(tmp_path):
    app, server = _plane_with_grant(
        tmp_path, fiscal_period={"start": "2020-01-01", "end": "2027-02-28"}, start="2020-01-01", end="2020-12-31"
    )
    with server as url:
        client = TestbedClient(url, issued_token(tmp_path, ALICE))
        for spec in ({"entrypoint": "true", "gpus": 1}, {"entrypoint": "true"}):  # CPU work is charged too
            with pytest.raises(TestbedError) as err:
                client.submit(spec)
            assert err.value.status_code == 403 and err.value.code == "grant_inactive"
            assert "runs 2020-01-01 to 2020-12-31" in str(err.value)


def test_a_crash_answers_the_error_body_too(noop_plane, monkeypatch):
    def broken() -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(noop_plane.plane.backend, "healthy", broken)
    assert_error_body(httpx.get(noop_plane.url + "/healthz"), 500, "internal_error")
