"""Admission throughput: 50 tenants submitting as fast as they can for 60 s (issue: admission at scale).

``admission_jobs_per_second``: admissions completed per second by ``--tenants`` threads, each a
tenant calling ``ControlPlane.admit`` in-process in a loop (the layer the admission figures time:
the checks, the price and the grant's balance, the tenant's section, the job record and its hold)
for ``--seconds``. SQLite: one control plane. PostgreSQL (a private server with durable commits): two replicas on
one database, each a process of its own (as replicas run), with half the tenants calling it in-process; and
``admission_jobs_per_second_pg_one_process``, the same two planes in one process, which shared one interpreter
(what this benchmark measured before; a fresh database). The background sync is not running: this is admission
alone (the HTTP figures, bench_control_plane.py and bench_replicas.py, include dispatch).
``max_queued_jobs_per_tenant`` is raised so the queue cap never refuses. ``pg_queries_per_admission``: the queries
(round trips) the replicas sent to PostgreSQL per admission, counted at the driver (``tests.postgres.record_queries``).

``--profile FILE`` writes a cProfile of every admission (all threads) to FILE (pstats).

Run: ``.venv/bin/python tests/benchmarks/bench_admission_throughput.py [--seconds 60] [--tenants 50] [--db sqlite|pg|both]``
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from operators.control_plane.auth import Principal  # noqa: E402
from operators.control_plane.plane import ControlPlane  # noqa: E402
from testbed.settings import ControlPlaneSettings  # noqa: E402
from testbed.jobs import JobSpec  # noqa: E402
from tests.benchmarks.admission_load import TRIVIAL, percentile  # noqa: E402
from tests.replicas import noop_settings, stack_with_tenants  # noqa: E402
from tests.benchmarks.scratch import scratch_home  # noqa: E402

QUEUE_CAP = 10_000_000


def settings_for(database_url: str, home: Path, tenants: int) -> tuple[ControlPlaneSettings, list[str]]:
    """A no-op control plane's settings for ``tenants`` tenants (the queue cap out of the way), and their ids."""
    stack, ids = stack_with_tenants(home, tenants, {"max_running_jobs": 10_000})
    return noop_settings(home, stack, database_url, max_queued_jobs_per_tenant=QUEUE_CAP), ids


def planes_for(database_url: str, home: Path, tenants: int, replicas: int) -> tuple[list[ControlPlane], list[str]]:
    settings, ids = settings_for(database_url, home, tenants)
    return [ControlPlane(settings) for _ in range(replicas)], ids


def run_load(
    planes: list[ControlPlane], tenants: list[str], seconds: float, profiles: list[cProfile.Profile] | None = None
) -> tuple[list[float], int, float]:
    """(latency samples, errors, wall seconds) of every tenant admitting in a loop for ``seconds``;
    with ``profiles``, each thread's admissions are profiled (one ``cProfile.Profile`` each, appended)."""
    spec = JobSpec(entrypoint=TRIVIAL, cpus=1)
    samples: list[list[float]] = [[] for _ in tenants]
    errors = [0]
    barrier = threading.Barrier(len(tenants) + 1)
    stop_at = [0.0]

    def tenant_loop(i: int, tenant: str) -> None:
        plane = planes[i % len(planes)]
        principal = Principal(subject=tenant, role="tenant")
        mine = samples[i]
        profile = None
        if profiles is not None:
            profile = cProfile.Profile()
            profiles.append(profile)
        barrier.wait()
        while time.perf_counter() < stop_at[0]:
            start = time.perf_counter()
            try:
                if profile is not None:
                    profile.runcall(plane.admit, principal, spec)
                else:
                    plane.admit(principal, spec)
            except Exception:  # counted, reported
                errors[0] += 1
                continue
            mine.append(time.perf_counter() - start)

    threads = [threading.Thread(target=tenant_loop, args=item, daemon=True) for item in enumerate(tenants)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    stop_at[0] = started + seconds
    barrier.wait()
    for t in threads:
        t.join()
    return [s for mine in samples for s in mine], errors[0], time.perf_counter() - started


def replica_load(settings: ControlPlaneSettings, tenants: list[str], seconds: float, start: Any, results: Any) -> None:
    """One replica's process: its control plane, its tenants admitting for ``seconds`` once every replica is ready
    (``start``, a barrier); puts (latency samples, errors, wall seconds, queries sent) on ``results``."""
    from tests.postgres import record_queries

    plane = ControlPlane(settings)
    try:
        sent = record_queries(plane.store.engine)
        start.wait()
        samples, errors, wall = run_load([plane], tenants, seconds)
        results.put((samples, errors, wall, len(sent)))
    finally:
        plane.shutdown()


def run_replicas(
    settings: ControlPlaneSettings, tenants: list[str], seconds: float, replicas: int
) -> tuple[list[float], int, float, int]:
    """(latency samples, errors, wall seconds, queries) of ``replicas`` processes, each a replica with its share of
    the tenants (the database is migrated already)."""
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(replicas), spawn.Queue()
    processes = [
        spawn.Process(target=replica_load, args=(settings, tenants[i::replicas], seconds, start, results))
        for i in range(replicas)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=seconds + 120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    samples = [sample for outcome in outcomes for sample in outcome[0]]
    return samples, sum(o[1] for o in outcomes), max(o[2] for o in outcomes), sum(o[3] for o in outcomes)


def report(label: str, samples: list[float], errors: int, wall: float) -> None:
    suffix = "" if label == "sqlite" else f"_{label}"
    print(
        f"admission_jobs_per_second{suffix}={len(samples) / wall:.0f}  # {len(samples)} admissions in {wall:.1f} s, "
        f"errors={errors}"
    )
    print(f"admission_throughput_p50_seconds{suffix}={percentile(samples, 50):.4f}")
    print(f"admission_throughput_p99_seconds{suffix}={percentile(samples, 99):.4f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--db", choices=["sqlite", "pg", "both"], default="both")
    parser.add_argument("--profile", type=Path, help="write a cProfile (pstats) of the SQLite admissions here")
    args = parser.parse_args()
    with scratch_home("tb-admit") as home:
        bench(args, home)
    return 0


def bench(args: argparse.Namespace, home: Path) -> None:
    if args.db in ("sqlite", "both"):
        (home / "sqlite").mkdir()
        planes, tenants = planes_for(f"sqlite:///{home / 'sqlite' / 'cp.db'}", home / "sqlite", args.tenants, 1)
        profiles: list[cProfile.Profile] | None = [] if args.profile else None
        try:
            report("sqlite", *run_load(planes, tenants, args.seconds, profiles))
        finally:
            for plane in planes:
                plane.shutdown()
        if profiles:
            stats = pstats.Stats(*profiles)
            stats.dump_stats(str(args.profile))
            stats.sort_stats("cumulative").print_stats(40)
    if args.db in ("pg", "both"):
        from tests.postgres import postgres_server

        (home / "pg").mkdir()
        (home / "pg-one-process").mkdir()
        with postgres_server(durable=True) as pg:
            settings, tenants = settings_for(pg.create_database("bench"), home / "pg", args.tenants)
            ControlPlane(settings).shutdown()  # the database migrated before the replicas start
            samples, errors, wall, queries = run_replicas(settings, tenants, args.seconds, 2)
            report("pg", samples, errors, wall)
            print(
                f"pg_queries_per_admission={queries / max(1, len(samples) + errors):.2f}  # round trips to PostgreSQL"
            )
            planes, tenants = planes_for(pg.create_database("bench_one"), home / "pg-one-process", args.tenants, 2)
            try:
                samples, errors, wall = run_load(planes, tenants, args.seconds)
            finally:
                for plane in planes:
                    plane.shutdown()
            report("pg_one_process", samples, errors, wall)


if __name__ == "__main__":
    sys.exit(main())
