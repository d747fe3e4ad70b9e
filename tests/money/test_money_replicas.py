"""Money under concurrency and failover: real HTTP, SQLite in-process and two replica processes on PostgreSQL.

- 50 concurrent GPU submissions never hold more than the balance (admit-if-fits): exactly as many are
  admitted as fit, the rest refused with the numbers.
- kill -9 of the reconciling replica mid-job loses no hold and charges nothing twice: every job ends
  with one hold, one release, charges covering each whole second of its run once, and hold = charged +
  release to the won.
"""

from __future__ import annotations

import math
import threading
from fractions import Fraction
from pathlib import Path

import httpx
import pytest
import yaml

from testbed.config import load_stack_file
from testbed.money import Meter, Rates, exact_cost, round_half_up
from testbed.settings import ControlPlaneSettings
from tests.control_plane.test_replicas import database
from tests.replicas import issued_token, noop_settings, ReplicaSet, stack_with_tenants
from tests.waiting import wait_until

LOCAL = Rates(gpu_hour_krw=2800, cpu_hour_krw=45, gib_hour_krw=6)  # Pulumi.gyeongnam.yaml, pool local
GPU_JOB = {"entrypoint": "sleep 600", "gpus": 1, "cpus": 1, "memory": "1Gi", "max_runtime_seconds": 3600}
HOLD = 2800 + 45 + 6  # one hour of 1 GPU, 1 CPU, 1 GiB
FITTING = 7
GRANT = HOLD * FITTING + HOLD - 1  # room for 7 holds, not 8


def grant_stack(home: Path, krw: int, count: int = 1, quota: dict | None = None) -> tuple[Path, list[str]]:
    path, tenants = stack_with_tenants(home, count, quota or {"gpus": 2, "cpus": 8, "memory": "64Gi"})
    document = yaml.safe_load(path.read_text())
    for tenant in document["config"]["testbed:tenants"]:
        tenant["grant"]["krw"] = krw
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    load_stack_file(path)  # still a valid stack
    return path, tenants


def submit_concurrently(urls: list[str], token: str, spec: dict, count: int) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            answers.append(
                http.post(urls[i % len(urls)] + "/v1/jobs", json=spec, headers={"Authorization": f"Bearer {token}"})
            )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def check_admitted_within_balance(answers: list[httpx.Response], url: str, token: str) -> None:
    admitted = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(answers) == 50
    assert len(admitted) == FITTING, [a.text for a in refused[:3]]
    assert all(a.json()["hold_krw"] == HOLD for a in admitted)
    assert {a.status_code for a in refused} == {403}
    assert {a.json()["error"] for a in refused} == {"grant_insufficient"}
    detail = refused[0].json()["detail"]
    assert f"job's hold {HOLD:,} KRW (1h x 1 CPUs, 1 GPUs, 1Gi at local@2026-03-01) does not fit" in detail
    assert f"balance {GRANT - FITTING * HOLD:,} KRW = grant {GRANT:,} KRW - charged" in detail
    usage = httpx.get(url + "/v1/usage", headers={"Authorization": f"Bearer {token}"}).json()["tenants"][0]
    assert usage["grant_krw"] == GRANT
    assert usage["held_krw"] + usage["charged_krw"] == FITTING * HOLD  # charges eat into the holds, never beyond
    assert usage["remaining_krw"] == GRANT - FITTING * HOLD


def test_fifty_concurrent_gpu_submissions_never_hold_more_than_the_balance_sqlite(tmp_path):
    from tests.serve import serve_in_thread
    from tests.conftest import make_noop_app

    stack, tenants = grant_stack(tmp_path, GRANT)
    app = make_noop_app(tmp_path, stack_file=stack)
    token = issued_token(tmp_path, tenants[0])
    with serve_in_thread(app) as url:
        check_admitted_within_balance(submit_concurrently([url], token, GPU_JOB, 50), url, token)
        operator = issued_token(tmp_path, "operator")
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {operator}"}).text
        tenant = tenants[0]
        assert f'testbed_tenant_grant_krw{{tenant="{tenant}"}} {GRANT:.1f}' in metrics
        assert f'testbed_tenant_remaining_krw{{tenant="{tenant}"}} {GRANT - FITTING * HOLD:.1f}' in metrics
        assert f'testbed_tenant_charged_krw_total{{tenant="{tenant}"}}' in metrics


def settings_for(home: Path, stack: Path, postgres_url: str) -> ControlPlaneSettings:
    return noop_settings(
        home,
        stack,
        postgres_url,
        sync_interval_seconds=0.1,
        lease_ttl_seconds=3.0,
        lease_renew_seconds=0.5,
        charge_interval_seconds=0.5,
    )


@pytest.mark.integration
def test_fifty_concurrent_gpu_submissions_on_two_replicas(postgres_url, tmp_path):
    stack, tenants = grant_stack(tmp_path, GRANT)
    with ReplicaSet(settings_for(tmp_path, stack, postgres_url), tmp_path) as replicas:
        token = issued_token(tmp_path, tenants[0])
        answers = submit_concurrently([r.url for r in replicas.replicas], token, GPU_JOB, 50)
        check_admitted_within_balance(answers, replicas.replicas[0].url, token)
    holds = database(postgres_url, "SELECT count(*), sum(amount_krw) FROM money_ledger WHERE kind = 'hold'")
    assert tuple(holds[0]) == (FITTING, FITTING * HOLD)


@pytest.mark.integration
def test_kill_9_of_the_reconciler_mid_job_loses_no_hold_and_charges_nothing_twice(postgres_url, tmp_path):
    stack, tenants = grant_stack(
        tmp_path, 180_000_000, quota={"gpus": 8, "cpus": 16, "memory": "128Gi", "max_running_jobs": 4}
    )
    spec = {"entrypoint": "sleep 6", "gpus": 2, "cpus": 4, "memory": "16Gi", "max_runtime_seconds": 60}
    with ReplicaSet(settings_for(tmp_path, stack, postgres_url), tmp_path) as replicas:
        token = issued_token(tmp_path, tenants[0])
        answers = submit_concurrently([r.url for r in replicas.replicas], token, spec, 4)
        assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
        # mid-job: the reconciler has charged every job at least once
        wait_until(
            lambda: (
                database(postgres_url, "SELECT count(DISTINCT job_id) FROM money_ledger WHERE kind = 'charge'")[0][0]
                == 4
            ),
            30,
            "a charge of every job",
        )
        killed = replicas.reconciler()
        killed.kill()  # SIGKILL to its process group
        survivor = replicas.reconciler(timeout=30)
        assert survivor is not killed
        wait_until(
            lambda: (
                database(
                    postgres_url, "SELECT count(*) FROM jobs WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'STOPPED')"
                )[0][0]
                == 0
            ),
            60,
            "every job to end",
        )
        wait_until(
            lambda: database(postgres_url, "SELECT count(*) FROM money_ledger WHERE kind = 'release'")[0][0] == 4,
            30,
            "every hold released",
        )
    jobs = {row.id: row for row in database(postgres_url, "SELECT * FROM jobs")}
    assert len(jobs) == 4 and {row.status for row in jobs.values()} == {"SUCCEEDED"}
    entries = database(postgres_url, "SELECT * FROM money_ledger ORDER BY id")
    per_second = Fraction(2 * 2800 + 4 * 45 + 16 * 6, 3600)  # 5,876 KRW per hour
    for job_id, job in jobs.items():
        mine = [e for e in entries if e.job_id == job_id]
        kinds = [e.kind for e in mine]
        assert kinds.count("hold") == 1 and kinds.count("release") == 1, kinds
        charges = [e for e in mine if e.kind == "charge"]
        assert len(charges) >= 2, "charged mid-job and at the end"
        seconds = math.floor(job.ended_at - job.started_at)
        assert sum(e.seconds for e in charges) == seconds, "each whole second charged exactly once"
        meter = Meter(
            **{
                k: sum(getattr(e, k) for e in charges)
                for k in ("cpu_milli_seconds", "gpu_seconds", "memory_mib_seconds")
            }
        )
        assert meter == Meter.of(4, 2, 16 * 2**30, seconds)
        charged = sum(e.amount_krw for e in charges)
        assert charged == round_half_up(exact_cost(meter, LOCAL)) == round_half_up(per_second * seconds)
        hold = next(e.amount_krw for e in mine if e.kind == "hold")
        release = next(e.amount_krw for e in mine if e.kind == "release")
        assert hold == round_half_up(per_second * 60) and hold == charged + release


@pytest.mark.integration
def test_stop_mode_stops_a_running_job_at_exhaustion_charged_exactly(postgres_url, tmp_path):
    stack, tenants = grant_stack(tmp_path, 20, quota={"gpus": 2, "cpus": 8, "memory": "64Gi"})
    document = yaml.safe_load(stack.read_text())
    document["config"]["testbed:tenants"][0]["grant"]["enforcement"] = "stop"
    stack.write_text(yaml.safe_dump(document, sort_keys=False))
    # 2 GPUs, 4 CPUs, 16 GiB: 5,876 KRW per hour = 1.63 won a second; 20 won after 12.3 s
    spec = {"entrypoint": "sleep 120", "gpus": 2, "cpus": 4, "memory": "16Gi", "max_runtime_seconds": 60}
    with ReplicaSet(settings_for(tmp_path, stack, postgres_url), tmp_path) as replicas:
        token = issued_token(tmp_path, tenants[0])
        client = httpx.Client(
            base_url=replicas.replicas[0].url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        job = client.post("/v1/jobs", json=spec).json()
        assert job["hold_krw"] == 98  # 60 s x 5876/3600 = 97.93 -> 98: admitted, the balance (20) is above zero
        ended = wait_until(
            lambda: (lambda j: j if j["status"] in ("STOPPED", "SUCCEEDED", "FAILED") else None)(
                client.get(f"/v1/jobs/{job['id']}").json()
            ),
            60,
            "the job to be stopped",
        )
        assert ended["status"] == "STOPPED"
        assert ended["message"].startswith("stopped: grant exhausted: charged "), ended["message"]
        assert "of 20 KRW (enforcement stop)" in ended["message"]  # the grant notice may follow
        refused = client.post("/v1/jobs", json=spec)
        assert refused.status_code == 403 and refused.json()["error"] == "grant_exhausted"
        usage = client.get("/v1/usage").json()["tenants"][0]
        client.close()
    row = database(postgres_url, f"SELECT started_at, ended_at FROM jobs WHERE id = '{job['id']}'")[0]
    seconds = math.floor(row.ended_at - row.started_at)
    charges = database(
        postgres_url, f"SELECT amount_krw, seconds FROM money_ledger WHERE kind = 'charge' AND job_id = '{job['id']}'"
    )
    assert sum(c.seconds for c in charges) == seconds
    charged = sum(c.amount_krw for c in charges)
    assert charged == round_half_up(Fraction(seconds * 5876, 3600)) >= 20  # exact to the won, the grant reached
    assert usage["charged_krw"] == charged and usage["held_krw"] == 0 and usage["remaining_krw"] == 0
