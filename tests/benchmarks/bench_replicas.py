"""Two control-plane replicas on one PostgreSQL (issue: the control plane in a cluster).

1. Admission under load: 50 tenants submit concurrently over real HTTP, half to each replica
   (real processes, no-op backend, PostgreSQL with its default durable commits).
   ``admission_p50_seconds_pg``/``admission_p99_seconds_pg`` time admission inside the control
   plane exactly as bench_control_plane.py's SQLite figure does (checks, the tenant's database
   lock, the persisted record); ``http_roundtrip_p*_pg`` is what the clients observed. ``*_raw_pg``: the same load
   again, once the sync has ended the first's jobs, from the SDK's own request sent on plain ``http.client``
   connections (admission_load.py), whose clients take a third of the SDK's CPU.
2. Failover: the lease holder is SIGKILLed; ``failover_seconds`` is the time until the other
   replica holds the lease and has completed a sync round (its ``/healthz`` says ``reconciler``),
   with the default lease (TTL 5 s, renewed every 1 s), once the admission load's jobs have ended.
   Repeated, the killed replica restarted each time.

Run: ``.venv/bin/python tests/benchmarks/bench_replicas.py [--tenants 50] [--jobs-per-tenant 20] [--failovers 3]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from testbed.client import TestbedClient  # noqa: E402
from tests.benchmarks.admission_load import Client, percentile, submit_concurrently  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402
from tests.replicas import issued_token, noop_settings, ReplicaSet, stack_with_tenants  # noqa: E402
from tests.waiting import wait_until  # noqa: E402
from tests.benchmarks.scratch import scratch_home  # noqa: E402

TIMED_REPLICA = [sys.executable, str(Path(__file__).with_name("timed_replica.py"))]


def _admission_samples(replicas: ReplicaSet) -> dict[str, list[float]]:
    return {r.name: httpx.get(r.url + "/_bench/admission", timeout=30).json() for r in replicas.replicas}


def bench_admission(
    replicas: ReplicaSet, home: Path, tenants: list[str], jobs_per_tenant: int, client: Client = "sdk"
) -> None:
    """The load through ``client``; its figures end in ``_pg`` (the SDK) or ``_raw_pg``."""
    suffix = "_pg" if client == "sdk" else "_raw_pg"
    taken = {name: len(samples) for name, samples in _admission_samples(replicas).items()}
    queries_before = sum(httpx.get(r.url + "/_bench/queries", timeout=30).json() for r in replicas.replicas)
    urls = [r.url for r in replicas.replicas]
    load = submit_concurrently(home, tenants, urls, jobs_per_tenant, client)
    queries = sum(httpx.get(r.url + "/_bench/queries", timeout=30).json() for r in replicas.replicas) - queries_before
    roundtrip, errors = load.roundtrip, load.errors
    per_replica = {name: samples[taken[name] :] for name, samples in _admission_samples(replicas).items()}
    admission = [s for samples in per_replica.values() for s in samples]
    reconciler = replicas.reconciler().name
    print(
        f"admission_jobs{suffix}={len(admission)} tenants={len(tenants)} replicas={len(replicas.replicas)} "
        f"errors={len(errors)} throughput_jobs_per_second{suffix.removesuffix('_pg')}={load.throughput:.0f}"
    )
    print(f"admission_p50_seconds{suffix}={percentile(admission, 50):.4f}")
    print(f"admission_p99_seconds{suffix}={percentile(admission, 99):.4f}")
    for name, samples in per_replica.items():
        role = "reconciler" if name == reconciler else "other"
        print(
            f"admission_p99_seconds{suffix}_{role}_replica={percentile(samples, 99):.4f}  # {len(samples)} admissions"
        )
    print(f"http_roundtrip_p50_seconds{suffix}={percentile(roundtrip, 50):.4f}")
    print(f"http_roundtrip_p99_seconds{suffix}={percentile(roundtrip, 99):.4f}")
    library = "httpx" if client == "sdk" else "http.client"
    print(
        f"client_cpu_ms_per_job{suffix}={load.client_cpu_ms_per_job:.2f}  # the 50 clients ({library}), on the same cores"
    )
    print(
        f"client_setup_seconds{suffix}={load.setup_seconds:.2f}  # building and connecting the clients, before the clock"
    )
    print(
        f"pg_queries_per_job{suffix.removesuffix('_pg')}={queries / max(1, len(roundtrip)):.2f}  # round trips to "
        "PostgreSQL by both replicas while the clients submitted (admission, dispatch, the sync and the lease), per job"
    )


def settle(replicas: ReplicaSet, operator: str) -> None:
    """Wait until the sync has seen every job submitted so far end."""
    with TestbedClient(replicas.reconciler().url, operator) as client:
        wait_until(lambda: not client.list_jobs(status="PENDING", limit=1).jobs, 120, "the sync to catch up")


def bench_failover(replicas: ReplicaSet, operator: str, rounds: int) -> None:
    samples = []
    for _ in range(rounds):
        holder = replicas.reconciler()
        settle(replicas, operator)  # the admission load's jobs have all ended
        killed_at = time.monotonic()
        holder.kill()
        replicas.reconciler(timeout=60)
        samples.append(time.monotonic() - killed_at)
        replicas.restart(holder)
        wait_until(holder.health, 60, f"{holder.name} back")
    print(
        f"failover_seconds={statistics.median(samples):.2f}  # median of {rounds}, max {max(samples):.2f}, "
        f"lease TTL 5 s renewed every 1 s"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--jobs-per-tenant", type=int, default=20)
    parser.add_argument("--failovers", type=int, default=3, help="0: the admission figures only")
    args = parser.parse_args()
    with scratch_home("tb-rep") as home:
        return bench(args, home)


def bench(args: argparse.Namespace, home: Path) -> int:
    with postgres_server(durable=True) as pg:
        stack, tenants = stack_with_tenants(home, args.tenants, {"max_running_jobs": 10_000})
        settings = noop_settings(home, stack, pg.create_database("bench"))
        with ReplicaSet(settings, home, command=TIMED_REPLICA) as replicas:
            operator = issued_token(home, "operator")  # written by the first replica
            bench_admission(replicas, home, tenants, args.jobs_per_tenant)
            settle(replicas, operator)
            bench_admission(replicas, home, tenants, args.jobs_per_tenant, "raw")
            if args.failovers > 0:
                bench_failover(replicas, operator, args.failovers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
