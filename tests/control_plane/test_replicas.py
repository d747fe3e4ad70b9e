"""Two control-plane processes on one PostgreSQL: nothing lost or doubled when the lease holder dies.

Both replicas are ``python -m operators.control_plane`` serving HTTP on 127.0.0.1, started together.
Tenants submit concurrently to both; a sampler reads what runs from both (``GET /v1/jobs``); the
reconciler's holder is SIGKILLed in the middle. Then: no tenant ever ran more than its quota (jobs,
CPUs), every accepted job exists and reached one terminal state, each job was handed to the backend
once (the no-op backend's shared record; with Ray, what the jobs themselves wrote), and the ledger
equals the jobs' metered time with nothing billed twice.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa

from tests.noop_doubles import SUBMIT_SECONDS_ENV
from testbed.client import TestbedClient
from testbed.settings import ControlPlaneSettings
from embedded.jobs_user import hand_over, jobs_user
from tests.replicas import issued_token, ray_head, Replica, ReplicaSet, stack_with_tenants
from tests.waiting import wait_until

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@dataclass
class Scenario:
    """One backend's run: tenants, quota, the jobs each submits, how to check the hand-overs."""

    tenants: int
    jobs_per_tenant: int
    quota: dict[str, Any]
    spec: Callable[[int], dict[str, Any]]  # the i-th job of a tenant
    backend: dict[str, Any]  # settings
    env: dict[str, str] = field(default_factory=dict)
    kill_after: int = 10  # accepted jobs before the lease holder is killed
    pace_seconds: float = 0.5  # each client waits up to this long (at random) before each submit
    clients_per_replica: int = 1  # per tenant


@dataclass
class Observed:
    """What the clients and the sampler saw."""

    accepted: dict[str, str] = field(default_factory=dict)  # job id -> tenant
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    peak_running: int = 0
    killed: Replica | None = None
    failover_seconds: float = 0.0


def submit_all(replicas: ReplicaSet, tokens: dict[str, str], scenario: Scenario, seen: Observed) -> None:
    """Every tenant submits its jobs from one client per replica at once, at random moments (so its
    dispatches meet on both replicas and the reconciler's); a replica that does not answer is skipped."""

    def client_loop(tenant: str, offset: int, jobs: range) -> None:
        headers = {"Authorization": f"Bearer {tokens[tenant]}"}
        pace = random.Random(f"{tenant}/{offset}")
        with httpx.Client(timeout=30) as http:
            for i in jobs:
                time.sleep(pace.uniform(0, scenario.pace_seconds))
                for attempt in range(6):
                    live = replicas.live()
                    target = live[(offset + attempt) % len(live)]
                    try:
                        response = http.post(target.url + "/v1/jobs", json=scenario.spec(i), headers=headers)
                    except httpx.TransportError:
                        time.sleep(0.2)
                        continue
                    if response.status_code == 201:
                        seen.accepted[response.json()["id"]] = tenant
                    else:
                        seen.errors.append(f"{tenant} via {target.name}: {response.status_code} {response.text[:300]}")
                    break
                else:
                    seen.errors.append(f"{tenant}: no replica answered job {i}")

    clients = len(replicas.replicas) * scenario.clients_per_replica
    threads = [
        threading.Thread(target=client_loop, args=(tenant, k, range(k, scenario.jobs_per_tenant, clients)))
        for tenant in tokens
        for k in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)


def sample_running(
    replicas: ReplicaSet, operator: str, quota: dict[str, Any], seen: Observed, stop: threading.Event
) -> None:
    """Read what runs from every live replica, again and again; note any tenant beyond its quota."""
    clients = {replica.name: TestbedClient(replica.url, operator, timeout=5) for replica in replicas.replicas}
    for replica in itertools.cycle(replicas.replicas):
        if stop.is_set():
            break
        if not replica.alive:
            continue
        try:
            running = clients[replica.name].list_jobs(status="RUNNING").jobs
        except Exception:  # a replica being killed
            continue
        per_tenant: dict[str, list[float]] = {}
        for job in running:
            per_tenant.setdefault(job.tenant, []).append(job.cpus)
        for tenant, cpus in per_tenant.items():
            if len(cpus) > quota["max_running_jobs"] or sum(cpus) > quota["cpus"]:
                seen.violations.append(f"{replica.name}: {tenant} runs {len(cpus)} jobs, {sum(cpus):g} CPUs")
        seen.samples += 1
        seen.peak_running = max([seen.peak_running, *map(len, per_tenant.values())])
        time.sleep(0.02)
    for client in clients.values():
        client.close()


def database(url: str, query: str) -> list[sa.Row]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query)))
    finally:
        engine.dispose()


def run_scenario(scenario: Scenario, postgres_url: str, home: Path) -> tuple[Observed, dict[str, sa.Row]]:
    """Start two replicas, submit, kill the lease holder, wait for every job to end; (what was seen, jobs)."""
    stack, tenants = stack_with_tenants(home, scenario.tenants, scenario.quota)
    settings = ControlPlaneSettings(
        stack_file=stack,
        database_url=postgres_url,
        mlflow_tracking_uri="http://127.0.0.1:1",
        storage_path=str(home / "storage"),
        credentials_dir=home / "credentials",
        sync_interval_seconds=0.1,
        lease_ttl_seconds=3.0,
        lease_renew_seconds=0.5,
        **scenario.backend,
    )
    seen = Observed()
    with ReplicaSet(settings, home, env=scenario.env) as replicas:
        tokens = {t: issued_token(home, t) for t in tenants}
        operator = issued_token(home, "operator")
        stop = threading.Event()
        sampler = threading.Thread(target=sample_running, args=(replicas, operator, scenario.quota, seen, stop))
        sampler.start()
        submitter = threading.Thread(target=submit_all, args=(replicas, tokens, scenario, seen))
        submitter.start()
        try:
            wait_until(
                lambda: len(seen.accepted) >= scenario.kill_after or seen.errors,
                60,
                f"{scenario.kill_after} accepted jobs",
            )
            assert not seen.errors, seen.errors[:5]
            seen.killed = replicas.reconciler()
            killed_at = time.monotonic()
            seen.killed.kill()
            survivor = replicas.reconciler(timeout=30)
            seen.failover_seconds = time.monotonic() - killed_at
            assert survivor is not seen.killed
            submitter.join(timeout=120)
            wait_until(
                lambda: (
                    database(
                        postgres_url, "SELECT count(*) FROM jobs WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'STOPPED')"
                    )[0][0]
                    == 0
                ),
                90,
                "every job to end",
            )
        finally:
            stop.set()
            sampler.join(timeout=30)
            submitter.join(timeout=30)
    jobs = {row.id: row for row in database(postgres_url, "SELECT * FROM jobs")}
    print(
        f"{scenario.backend['backend']}: {len(jobs)} jobs, {seen.samples} samples (peak {seen.peak_running} running "
        f"per tenant), {len(seen.violations)} over quota, failover {seen.failover_seconds:.1f}s"
    )
    return seen, jobs


def check(scenario: Scenario, seen: Observed, jobs: dict[str, sa.Row], postgres_url: str) -> None:
    """What must hold whatever the backend: quota, one terminal state each, the ledger."""
    expected = scenario.tenants * scenario.jobs_per_tenant
    assert not seen.errors, seen.errors[:5]
    assert len(seen.accepted) == expected
    assert seen.samples >= 20 and seen.peak_running >= 1, "the sampler must have seen jobs running"
    assert not seen.violations, seen.violations[:10]
    assert set(seen.accepted) <= set(jobs), "an accepted job is missing"
    assert {jobs[j].status for j in seen.accepted} == {"SUCCEEDED"}, [
        (j, jobs[j].status, jobs[j].message) for j in seen.accepted if jobs[j].status != "SUCCEEDED"
    ]
    assert all(row.status in TERMINAL and row.dispatched for row in jobs.values())
    folded = database(postgres_url, "SELECT job_id, status FROM usage_jobs")
    assert sorted(folded) == sorted((row.id, row.status) for row in jobs.values()), "each ended job is folded once"
    totals = database(
        postgres_url,
        "SELECT tenant, sum(cpu_seconds), sum(jobs_succeeded + jobs_failed + jobs_stopped) "
        "FROM usage_totals GROUP BY tenant",
    )
    metered: dict[str, float] = {}
    for row in jobs.values():
        metered[row.tenant] = metered.get(row.tenant, 0.0) + row.cpus * max(
            0.0, row.ended_at - (row.started_at or row.ended_at)
        )
    assert {tenant: count for tenant, _, count in totals} == {
        t: sum(r.tenant == t for r in jobs.values()) for t in metered
    }
    for tenant, cpu_seconds, _ in totals:
        assert cpu_seconds == pytest.approx(metered[tenant], rel=0.01), tenant
    assert sum(metered.values()) > 0


def test_two_replicas_with_the_noop_backend(postgres_url, tmp_path):
    scenario = Scenario(
        tenants=10,
        jobs_per_tenant=8,
        quota={"max_running_jobs": 2, "cpus": 3, "memory": "64Gi"},
        spec=lambda i: {"entrypoint": "sleep 0.6", "cpus": 1 + i % 2, "env": {SUBMIT_SECONDS_ENV: "0.1"}},
        backend={"backend": "noop"},
        kill_after=25,
        clients_per_replica=2,
    )
    seen, jobs = run_scenario(scenario, postgres_url, tmp_path)
    check(scenario, seen, jobs, postgres_url)
    assert seen.peak_running == 2  # tenants were at their quota: the check bites
    # each job was handed to the backend once; only a job the killed replica handed over just before
    # it died (so its transaction, and the mark "dispatched", were lost) was handed over again, and adopted
    handed = {row.job_id: row for row in database(postgres_url, "SELECT * FROM noop_jobs")}
    assert set(handed) == set(jobs)
    again = {job_id: row for job_id, row in handed.items() if row.submits != 1}
    assert all(row.submits == 2 and row.submitter.endswith(f":{seen.killed.pid}") for row in again.values()), again
    assert len(again) <= 4, again
    # what ran in the backend, at every instant, never exceeded a tenant's quota; a job in `again` is
    # left out: it ran unaccounted from its first hand-over until a live replica adopted it
    quota = scenario.quota
    for tenant in {row.tenant for row in handed.values()}:
        edges = sorted(
            itertools.chain.from_iterable(
                ((row.submitted_at, 1, jobs[job_id].cpus), (row.submitted_at + row.run_seconds, -1, -jobs[job_id].cpus))
                for job_id, row in handed.items()
                if row.tenant == tenant and job_id not in again
            ),
            key=lambda edge: (edge[0], edge[1]),
        )
        running, cpus = 0, 0.0
        for _, step, cpu in edges:
            running, cpus = running + step, cpus + cpu
            assert running <= quota["max_running_jobs"] and cpus <= quota["cpus"] + 1e-9, tenant
    assert seen.failover_seconds < 20  # the lease lapses in 3 s; then one full sync round (bench: failover_seconds)


@pytest.fixture()
def ray_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="tb-r-", dir="/tmp"))  # Ray's socket paths must stay short
    home.chmod(0o711)  # run as root, Ray runs as the jobs' user, which passes through here to its state folder
    try:
        yield home
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.integration
def test_two_replicas_with_the_local_ray_backend(postgres_url, ray_home):
    runs = ray_home / "runs.txt"
    runs.touch()
    if (user := jobs_user()) is not None:
        hand_over(user, runs)  # the jobs write it
    entrypoint = (
        f"python -c \"import os, time; open('{runs}', 'a').write(os.environ['TESTBED_JOB_ID'] + '\\n'); time.sleep(1)\""
    )
    with ray_head(ray_home / "ray-head", num_cpus=2) as ray:
        scenario = Scenario(
            tenants=3,
            jobs_per_tenant=3,
            quota={"max_running_jobs": 1, "cpus": 1, "memory": "8Gi"},
            spec=lambda _i: {"entrypoint": entrypoint, "cpus": 0.5, "memory": "512Mi"},
            backend={"backend": "ray", "ray_address": ray.dashboard_url, "capacity_cpus": 2, "capacity_gpus": 0},
            env=ray.env,
            kill_after=3,
        )
        seen, jobs = run_scenario(scenario, postgres_url, ray_home)
    check(scenario, seen, jobs, postgres_url)
    # each job ran once: every driver wrote its id once
    written = runs.read_text().split()
    assert sorted(written) == sorted(jobs), "a job ran twice, or not at all"
