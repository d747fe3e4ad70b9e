"""Control-plane benchmarks (issue: local testbed).

1. Submit overhead: the same trivial job through the control plane (SDK over HTTP) and through
   Ray's JobSubmissionClient against the same local Ray, alternating, polling both at the same
   interval. Prints submit-to-RUNNING and submit-to-SUCCEEDED medians and
   ``submit_overhead_ratio`` (the larger of the two ratios, control plane / Ray).
2. Admission under load: 50 tenants submit concurrently over real HTTP to a control plane with
   the no-op backend, served in a process of its own (timed_replica.py, as ``python -m
   operators.control_plane`` serves it); the clients run in this one. ``admission_p50_seconds``/
   ``admission_p99_seconds`` time admission inside the control plane (quota and grant checks,
   template resolution, the persisted job record); ``http_roundtrip_p*`` is what the 50 clients
   observed, queueing on 2 cores included; the clock starts once every client is built and connected
   (``client_setup_seconds``). ``*_raw``: the same load from the SDK's own request sent on plain ``http.client``
   connections (admission_load.py), whose clients take a third of the SDK's CPU from the same cores, against a fresh
   server. ``http_layer_*``: the same load again with every submit after a tenant's first answered from memory
   (timed_replica.py): what the HTTP layer alone sustains and costs.

Run: ``.venv/bin/python tests/benchmarks/bench_control_plane.py [--rounds N]``
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from testbed.client import TestbedClient  # noqa: E402
from embedded import RAY_LOOPBACK_ENV, LocalTestbed  # noqa: E402
from tests.replicas import ReplicaSet, noop_settings, stack_with_tenants  # noqa: E402
from tests.benchmarks.admission_load import TRIVIAL, Client, LoadResult, percentile, submit_concurrently  # noqa: E402
from tests.benchmarks.timed_replica import ADMISSION_ENV  # noqa: E402
from tests.benchmarks.scratch import scratch_home  # noqa: E402

TIMED_REPLICA = [sys.executable, str(Path(__file__).with_name("timed_replica.py"))]

POLL = 0.02


def _time_until(get_status, start: float) -> tuple[float, float]:
    """Poll a status getter; return seconds from ``start`` to first RUNNING and to SUCCEEDED."""
    running = None
    while True:
        status = get_status()
        now = time.perf_counter()
        if status in ("RUNNING", "SUCCEEDED") and running is None:
            running = now - start
        if status == "SUCCEEDED":
            return running, now - start
        if status in ("FAILED", "STOPPED"):
            raise RuntimeError(f"benchmark job ended {status}")
        time.sleep(POLL)


def bench_submit_overhead(rounds: int) -> None:
    with scratch_home("tb-bench") as home:
        _submit_overhead(rounds, home)


def _submit_overhead(rounds: int, home: Path) -> None:
    import os

    local = LocalTestbed(home)
    os.environ.update(RAY_LOOPBACK_ENV)
    try:
        status = local.up(region="gyeongnam", num_cpus=2)
        os.environ.update(local.ray_auth_env())
        from ray.job_submission import JobSubmissionClient

        ray_client = JobSubmissionClient(status.ray_dashboard_url)
        tenant = "changwon-precision"
        cp_client = TestbedClient(status.control_plane_url, local.token(tenant))
        samples: dict[str, list[tuple[float, float]]] = {"ray": [], "control_plane": []}

        def via_ray() -> tuple[float, float]:
            start = time.perf_counter()
            job_id = ray_client.submit_job(entrypoint=TRIVIAL, entrypoint_num_cpus=1)
            return _time_until(lambda: str(ray_client.get_job_status(job_id).value), start)

        def via_control_plane() -> tuple[float, float]:
            start = time.perf_counter()
            job_id = cp_client.submit(entrypoint=TRIVIAL, cpus=1).id
            return _time_until(lambda: cp_client.get_job(job_id).status.value, start)

        via_ray(), via_control_plane()  # warm both paths (runtime env agent, HTTP pools)
        for i in range(rounds):
            order = [("ray", via_ray), ("control_plane", via_control_plane)]
            for name, run in order if i % 2 == 0 else reversed(order):
                samples[name].append(run())
        med = {
            name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v))
            for name, v in samples.items()
        }
        running_ratio = med["control_plane"][0] / med["ray"][0]
        succeeded_ratio = med["control_plane"][1] / med["ray"][1]
        print(f"ray_submit_to_running_seconds={med['ray'][0]:.3f}")
        print(f"control_plane_submit_to_running_seconds={med['control_plane'][0]:.3f}")
        print(f"ray_submit_to_succeeded_seconds={med['ray'][1]:.3f}")
        print(f"control_plane_submit_to_succeeded_seconds={med['control_plane'][1]:.3f}")
        print(f"submit_to_running_ratio={running_ratio:.3f}")
        print(f"submit_to_succeeded_ratio={succeeded_ratio:.3f}")
        print(
            f"submit_overhead_ratio={max(running_ratio, succeeded_ratio):.3f}  # rounds={rounds}, median, larger of the two"
        )
    finally:
        local.down()


def _serve_load(
    tenants: int, jobs_per_tenant: int, env: dict[str, str], client: Client = "sdk"
) -> tuple[LoadResult, list[float], dict[str, float]]:
    """``tenants`` tenants' submits over HTTP through ``client`` to one timed replica (no-op backend, SQLite) with
    ``env``: the clients' load, the admission samples and the server's CPU milliseconds per job by thread."""
    import httpx

    with scratch_home("tb-adm") as home:
        stack, tenant_ids = stack_with_tenants(home, tenants, {"max_running_jobs": 10_000})
        settings = noop_settings(home, stack, f"sqlite:///{home / 'cp.db'}")
        # The control plane in a process of its own (as served), the 50 clients in this one: clients sharing the
        # server's interpreter would charge their own HTTP work to the server.
        with ReplicaSet(settings, home, count=1, command=TIMED_REPLICA, env=env) as served:
            url = served.replicas[0].url
            before = httpx.get(url + "/_bench/threads", timeout=30).json()
            load = submit_concurrently(home, tenant_ids, [url], jobs_per_tenant, client)
            after = httpx.get(url + "/_bench/threads", timeout=30).json()
            admission = httpx.get(url + "/_bench/admission", timeout=30).json()
    jobs = max(1, len(load.roundtrip))
    spent = {name: (seconds - before.get(name, 0.0)) * 1000 / jobs for name, seconds in after.items()}
    return load, admission, spent


def bench_admission(tenants: int, jobs_per_tenant: int) -> None:
    load, admission, spent = _serve_load(tenants, jobs_per_tenant, {})
    roundtrip, errors = load.roundtrip, load.errors
    print(
        f"admission_jobs={len(admission)} tenants={tenants} errors={len(errors)} throughput_jobs_per_second={load.throughput:.0f}"
    )
    print(f"admission_p50_seconds={percentile(admission, 50):.4f}")
    print(f"admission_p99_seconds={percentile(admission, 99):.4f}")
    print(f"http_roundtrip_p50_seconds={percentile(roundtrip, 50):.4f}")
    print(f"http_roundtrip_p99_seconds={percentile(roundtrip, 99):.4f}")
    # Where the server's CPU went, per job: the event loop (MainThread: HTTP), admission, dispatch, the sync.
    print(f"server_cpu_ms_per_job={sum(spent.values()):.2f}")
    print(f"client_cpu_ms_per_job={load.client_cpu_ms_per_job:.2f}  # the 50 clients (httpx), on the same cores")
    print(f"client_setup_seconds={load.setup_seconds:.2f}  # building and connecting the 50 clients, before the clock")
    for name, ms in sorted(spent.items(), key=lambda item: -item[1]):
        if ms >= 0.01:
            print(f"server_cpu_ms_per_job_{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}={ms:.2f}")
    # The same load with every submit after a tenant's first answered from memory (timed_replica.py): what the
    # HTTP layer alone (token, validation, answer) sustains and costs, the ceiling the rest of admission lowers.
    layer, _, layer_spent = _serve_load(tenants, jobs_per_tenant, {ADMISSION_ENV: "memory"})
    print(
        f"http_layer_throughput_jobs_per_second={layer.throughput:.0f}  # errors={len(layer.errors)}, admission answered from memory"
    )
    print(f"http_layer_server_cpu_ms_per_job={sum(layer_spent.values()):.2f}")
    # The same load from clients that take less of the server's cores: the SDK's request on http.client.
    raw, raw_admission, raw_spent = _serve_load(tenants, jobs_per_tenant, {}, "raw")
    print(f"throughput_jobs_per_second_raw={raw.throughput:.0f}  # errors={len(raw.errors)}, http.client")
    print(f"admission_p99_seconds_raw={percentile(raw_admission, 99):.4f}")
    print(f"server_cpu_ms_per_job_raw={sum(raw_spent.values()):.2f}")
    print(
        f"client_cpu_ms_per_job_raw={raw.client_cpu_ms_per_job:.2f}  # the 50 clients (http.client), on the same cores"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--jobs-per-tenant", type=int, default=20)
    parser.add_argument("--only", choices=["overhead", "admission"])
    args = parser.parse_args()
    if args.only in (None, "admission"):
        bench_admission(args.tenants, args.jobs_per_tenant)
    if args.only in (None, "overhead"):
        bench_submit_overhead(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
