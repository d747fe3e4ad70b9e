"""Idle GPUs, for real: a fake DCGM exporter -> a real Prometheus (the testbed.gpu.idle rules join utilisation
to jobs through kube_pod_labels) -> the control plane's idle watch (over Prometheus' HTTP API) -> idle_since on
the job, idle GPU-hours in usage, and the stop of a job whose tenant's policy says so."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from testbed.client import TestbedClient
from testbed.config import stack_file_for
from testbed.jobs import JobSpec, JobStatus
from testbed.money import kst_month
from tests.metering.fake_dcgm import FakeDcgmExporter
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

STOPPING_TENANT = "changwon-precision"  # idle_stop_minutes set below
FLAGGING_TENANT = "gimhae-robotics"  # no policy: flagged and counted, never stopped


@pytest.fixture()
def exporter() -> Iterator[FakeDcgmExporter]:
    with FakeDcgmExporter() as fake:
        yield fake


def _stack_with_policy(tmp_path: Path) -> Path:
    document = yaml.safe_load(stack_file_for("gyeongnam").read_text())
    for tenant in document["config"]["testbed:tenants"]:
        if tenant["id"] == STOPPING_TENANT:
            tenant["idle_stop_minutes"] = 0.1  # 6 s
    path = tmp_path / "Pulumi.gyeongnam.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_idle_gpus_are_flagged_counted_and_stopped_by_policy(
    tmp_path: Path, exporter: FakeDcgmExporter, prometheus
) -> None:
    from operators.control_plane.app import create_app
    from tests.replicas import issued_token, noop_settings
    from tests.serve import serve_in_thread

    scrape = {"job_name": "dcgm-exporter", "honor_labels": True, "static_configs": [{"targets": [exporter.address]}]}
    with prometheus(None, token="unused", extra_scrape_configs=[scrape], interval=0.5) as prom:
        settings = noop_settings(
            tmp_path,
            _stack_with_policy(tmp_path),
            f"sqlite:///{tmp_path / 'cp.db'}",
            prometheus_url=prom.url,
            idle_flag_minutes=0.05,
            idle_check_seconds=0.5,
            idle_threshold_ratio=0.05,  # flagged after 3 s idle
        )
        app = create_app(settings)
        with serve_in_thread(app) as url:

            def client(subject: str) -> TestbedClient:
                return TestbedClient(url, issued_token(tmp_path, subject))

            stopping, flagging = client(STOPPING_TENANT), client(FLAGGING_TENANT)
            spec = JobSpec(entrypoint="sleep 600", gpus=1, cpus=1, memory="1Gi")
            a, b = stopping.submit(spec), flagging.submit(spec)
            exporter.jobs[a.id] = (STOPPING_TENANT, 2.0)  # idle
            exporter.jobs[b.id] = (FLAGGING_TENANT, 90.0)  # busy
            wait_until(
                lambda: (
                    stopping.get_job(a.id).status == JobStatus.RUNNING
                    and flagging.get_job(b.id).status == JobStatus.RUNNING
                ),
                20,
                "both jobs running",
            )
            # The join is Prometheus' own: the recorded series names the job and tenant.
            wait_until(
                lambda: prom.value("job:testbed_job_gpu_utilization:max_ratio", job_id=a.id) is not None,
                20,
                "the recording rule to join the fake DCGM series to the job",
            )
            assert prom.value(
                "job:testbed_job_gpu_utilization:max_ratio", job_id=b.id, tenant=FLAGGING_TENANT
            ) == pytest.approx(0.9)

            flagged = wait_until(
                lambda: (job := stopping.get_job(a.id)).idle_since and job, 20, "the idle job to be flagged"
            )
            assert flagged.status == JobStatus.RUNNING
            stopped = wait_until(
                lambda: (job := stopping.get_job(a.id)).status == JobStatus.STOPPED and job,
                30,
                "the idle job to be stopped by its tenant's policy",
            )
            assert "idle_stop_minutes" in stopped.message and "under 5%" in stopped.message, stopped.message
            assert stopped.idle_gpu_hours > 0
            busy = flagging.get_job(b.id)
            assert busy.idle_since is None and busy.idle_gpu_hours == 0 and busy.status == JobStatus.RUNNING

            exporter.jobs[b.id] = (FLAGGING_TENANT, 1.0)  # now the other one idles: flagged, counted, not stopped
            flagged_b = wait_until(
                lambda: (job := flagging.get_job(b.id)).idle_since and job, 30, "the second job to be flagged"
            )
            still = wait_until(  # later idle checks ran (they counted more idle time) and did not stop it
                lambda: (job := flagging.get_job(b.id)).idle_gpu_hours > flagged_b.idle_gpu_hours and job,
                30,
                "a later idle check to count the second job's idle time",
            )
            assert still.status == JobStatus.RUNNING and still.idle_gpu_hours > 0

            usage = {t.tenant: t for t in client("operator").usage().tenants}
            assert usage[STOPPING_TENANT].idle_gpu_hours == pytest.approx(stopped.idle_gpu_hours)
            assert usage[FLAGGING_TENANT].idle_gpu_hours > 0
            assert usage["sacheon-aero-parts"].idle_gpu_hours == 0
            # ... and on the tenant's statement of this month
            month = kst_month(time.time())
            token = issued_token(tmp_path, STOPPING_TENANT)
            statement = httpx.get(
                f"{url}/v1/statements/{month}",
                params={"tenant": STOPPING_TENANT},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
            [mine] = statement["tenants"]
            assert float(mine["idle_gpu_hours"]) == pytest.approx(stopped.idle_gpu_hours, abs=1e-6)
            # busy again: unflagged; the idle hours it held stay counted
            exporter.jobs[b.id] = (FLAGGING_TENANT, 95.0)
            wait_until(lambda: flagging.get_job(b.id).idle_since is None, 30, "the busy job to be unflagged")
            assert flagging.get_job(b.id).idle_gpu_hours >= still.idle_gpu_hours
            flagging.stop(b.id)
