"""Two control-plane replicas on one PostgreSQL (issue: the control plane in a cluster).

1. Admission under load: 50 tenants submit concurrently over real HTTP, half to each replica
   (real processes, no-op backend, PostgreSQL with its default durable commits).
   ``admission_p50_seconds_pg``/``admission_p99_seconds_pg`` time admission inside the control
   plane exactly as bench_control_plane.py's SQLite figure does (checks, the tenant's database
   lock, the persisted record); ``http_roundtrip_p*_pg`` is what the clients observed.
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
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from testbed.client import TestbedClient  # noqa: E402
from tests.benchmarks.admission_load import percentile, submit_concurrently  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402
from tests.replicas import ReplicaSet, noop_settings, stack_with_tenants  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

TIMED_REPLICA = [sys.executable, str(Path(__file__).with_name("timed_replica.py"))]


def bench_admission(replicas: ReplicaSet, home: Path, tenants: list[str], jobs_per_tenant: int) -> None:
    queries_before = sum(httpx.get(r.url + "/_bench/queries", timeout=30).json() for r in replicas.replicas)
    load = submit_concurrently(home / "credentials", tenants, [r.url for r in replicas.replicas], jobs_per_tenant)
    queries = sum(httpx.get(r.url + "/_bench/queries", timeout=30).json() for r in replicas.replicas) - queries_before
    roundtrip, errors = load.roundtrip, load.errors
    per_replica = {r.name: httpx.get(r.url + "/_bench/admission", timeout=30).json() for r in replicas.replicas}
    admission = [s for samples in per_replica.values() for s in samples]
    reconciler = replicas.reconciler().name
    print(
        f"admission_jobs_pg={len(admission)} tenants={len(tenants)} replicas={len(replicas.replicas)} "
        f"errors={len(errors)} throughput_jobs_per_second={load.throughput:.0f}"
    )
    print(f"admission_p50_seconds_pg={percentile(admission, 50):.4f}")
    print(f"admission_p99_seconds_pg={percentile(admission, 99):.4f}")
    for name, samples in per_replica.items():
        role = "reconciler" if name == reconciler else "other"
        print(f"admission_p99_seconds_pg_{role}_replica={percentile(samples, 99):.4f}  # {len(samples)} admissions")
    print(f"http_roundtrip_p50_seconds_pg={percentile(roundtrip, 50):.4f}")
    print(f"http_roundtrip_p99_seconds_pg={percentile(roundtrip, 99):.4f}")
    print(f"client_cpu_ms_per_job_pg={load.client_cpu_ms_per_job:.2f}  # the 50 clients (httpx), on the same cores")
    print(
        f"pg_queries_per_job={queries / max(1, len(roundtrip)):.2f}  # round trips to PostgreSQL by both replicas while "
        "the clients submitted (admission, dispatch, the sync and the lease), per job"
    )


def bench_failover(replicas: ReplicaSet, operator: str, rounds: int) -> None:
    samples = []
    for _ in range(rounds):
        holder = replicas.reconciler()
        with TestbedClient(holder.url, operator) as client:  # the admission load's jobs have all ended
            wait_until(lambda: not client.list_jobs(status="PENDING", limit=1).jobs, 120, "the sync to catch up")
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
    home = Path(tempfile.mkdtemp(prefix="tb-rep-", dir="/tmp"))
    with postgres_server(durable=True) as pg:
        stack, tenants = stack_with_tenants(home, args.tenants, {"max_running_jobs": 10_000})
        settings = noop_settings(home, stack, pg.create_database("bench"))
        with ReplicaSet(settings, home, command=TIMED_REPLICA) as replicas:
            bench_admission(replicas, home, tenants, args.jobs_per_tenant)
            if args.failovers > 0:
                bench_failover(replicas, (home / "credentials" / "operator.token").read_text().strip(), args.failovers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
