"""The program office's token: every tenant's accounts readable, nothing writable (a sweep of every OpenAPI route)."""

from __future__ import annotations

import re

import httpx

from operators.control_plane.auth import PROGRAM_OFFICE
from testbed.jobs import JobSpec

WRITE_METHODS = {"post", "put", "patch", "delete"}


def _concrete(path: str, job_id: str) -> str:
    """A route's path with its parameters filled in (a real job id, a real-looking name or digest)."""
    values = {"job_id": job_id, "subject": "changwon-precision", "ref": "sha256:" + "0" * 64, "name": "a.csv"}
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values.get(m.group(1), "x"), path)


def test_the_program_office_token_is_written_like_the_operators(noop_plane) -> None:
    path = noop_plane.home / "credentials" / f"{PROGRAM_OFFICE}.token"
    assert path.stat().st_mode & 0o777 == 0o600
    token = path.read_text().strip()
    assert token.startswith("tbt_") and token != noop_plane.token("operator")


def test_every_write_route_refuses_the_program_office(noop_plane) -> None:
    tenant = noop_plane.client("changwon-precision")
    job = tenant.submit(JobSpec(entrypoint="sleep 30", cpus=1, memory="1Gi"))
    before = noop_plane.plane.store.get_job(job.id)
    token = noop_plane.token(PROGRAM_OFFICE)
    spec = httpx.get(f"{noop_plane.url}/openapi.json").json()
    writes = [(method, path) for path, item in spec["paths"].items() for method in item if method in WRITE_METHODS]
    assert len(writes) >= 7, writes  # jobs, stop, token, packages, data put/delete, outputs delete
    headers = {"Authorization": f"Bearer {token}"}
    for method, path in writes:
        response = httpx.request(
            method.upper(),
            noop_plane.url + _concrete(path, job.id),
            headers=headers,
            json={"entrypoint": "true"} if path == "/v1/jobs" else None,
            timeout=10,
        )
        assert response.status_code == 403, (method, path, response.status_code, response.text)
        assert response.json()["error"] == "forbidden" and "read-only" in response.json()["detail"]
    after = noop_plane.plane.store.get_job(job.id)
    assert after.status in ("PENDING", "RUNNING") and after.stop_requested_at is None is before.stop_requested_at
    assert [j.id for j in noop_plane.plane.store.list_jobs()] == [job.id]  # nothing was submitted
    # a tenant's token still works: nothing was rotated
    assert tenant.get_job(job.id).id == job.id
    tenant.stop(job.id)


def test_the_program_office_reads_every_tenants_accounts_and_nothing_else(noop_plane) -> None:
    token = noop_plane.token(PROGRAM_OFFICE)
    headers = {"Authorization": f"Bearer {token}"}
    job = noop_plane.client("changwon-precision").submit(JobSpec(entrypoint="true", cpus=1, memory="1Gi"))
    configured = {t.id for t in noop_plane.plane.stack.tenants}
    usage = httpx.get(f"{noop_plane.url}/v1/usage", headers=headers).json()
    assert {t["tenant"] for t in usage["tenants"]} == configured
    one = httpx.get(f"{noop_plane.url}/v1/usage", params={"tenant": "gimhae-robotics"}, headers=headers).json()
    assert [t["tenant"] for t in one["tenants"]] == ["gimhae-robotics"]
    tenants = httpx.get(f"{noop_plane.url}/v1/tenants", headers=headers).json()["tenants"]
    assert {t["id"] for t in tenants} == configured
    # Not a tenant: no jobs, logs, storage, MLflow login, /metrics of its own or of others.
    assert httpx.get(f"{noop_plane.url}/v1/jobs/{job.id}", headers=headers).status_code == 404
    assert httpx.get(f"{noop_plane.url}/v1/jobs/{job.id}/logs", headers=headers).status_code == 404
    assert httpx.get(f"{noop_plane.url}/v1/jobs", headers=headers).json()["jobs"] == []
    assert httpx.get(f"{noop_plane.url}/v1/data", headers=headers).status_code == 403
    assert httpx.get(f"{noop_plane.url}/metrics", headers=headers).status_code == 403
    # The region's budget, every tenant's statement and the audit trail: the program office reads them, a tenant not.
    tenant_headers = {"Authorization": f"Bearer {noop_plane.token('changwon-precision')}"}
    assert httpx.get(f"{noop_plane.url}/v1/budget", headers=tenant_headers).status_code == 403
    budget = httpx.get(f"{noop_plane.url}/v1/budget", headers=headers).json()
    assert budget["region"] == "gyeongnam" and budget["funding"]["national"] == 7_000_000_000
    month = budget["fiscal_period_start"][:7]
    statement = httpx.get(f"{noop_plane.url}/v1/statements/{month}", headers=headers).json()
    assert {t["tenant"] for t in statement["tenants"]} == configured
    audit = httpx.get(f"{noop_plane.url}/v1/audit", headers=headers)
    assert audit.status_code == 200 and audit.json()["entries"]
    assert httpx.get(f"{noop_plane.url}/v1/audit", headers=tenant_headers).status_code == 403
