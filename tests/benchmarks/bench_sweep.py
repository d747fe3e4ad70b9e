"""A sweep: one company submits hundreds of jobs at once, more than its quota runs (issue: admission at scale).

The jobs go through ``ControlPlane.admit_with_balance``, ``ControlPlane.dispatch`` and the job's view in a row, as
``POST /v1/jobs`` does, on SQLite, with the no-op backend and the sync stopped (nothing ends: the tenant's
quota fills with its first jobs and the rest wait). Prints the time and the SQL statements per job
(counted on the control plane's engine), the median of the rounds: ``sweep_ms_per_job``,
``sweep_statements_per_job``.

Run: ``.venv/bin/python tests/benchmarks/bench_sweep.py [--jobs N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy import event  # noqa: E402

from operators.control_plane.api.jobs import admitted_view  # noqa: E402
from operators.control_plane.auth import Principal  # noqa: E402
from tests.benchmarks.bench_admission_throughput import planes_for  # noqa: E402
from tests.benchmarks.scratch import scratch_home  # noqa: E402
from testbed.jobs import JobSpec  # noqa: E402

LONG = "sleep 100000"  # the no-op backend "runs" it that long


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_home("tb-sweep") as home:
        return bench(args, home)


def bench(args: argparse.Namespace, home: Path) -> int:
    planes, tenants = planes_for(f"sqlite:///{home / 'cp.db'}", home, 1, 1)
    plane = planes[0]
    plane.dispatcher.stop_sync()
    statements = [0]

    def counted(*_args) -> None:
        statements[0] += 1

    event.listen(plane.store.engine, "before_cursor_execute", counted)
    try:
        company = Principal(subject=tenants[0], role="tenant")
        spec = JobSpec(entrypoint=LONG, cpus=1)
        times, counts = [], []
        for _ in range(args.rounds):
            statements[0], start = 0, time.perf_counter()
            for _ in range(args.jobs):
                admitted = plane.admit_with_balance(company, spec)
                admitted_view(plane, admitted, plane.dispatch(admitted.row))
            times.append((time.perf_counter() - start) / args.jobs)
            counts.append(statements[0] / args.jobs)
        running = sum(1 for job in plane.store.list_jobs() if job.dispatched)
        print(f"sweep_jobs={args.jobs} rounds={args.rounds} dispatched={running} (what the tenant's quota runs)")
        print(f"sweep_ms_per_job={statistics.median(times) * 1000:.3f}  # median of the rounds")
        print(f"sweep_statements_per_job={statistics.median(counts):.2f}")
    finally:
        event.remove(plane.store.engine, "before_cursor_execute", counted)
        plane.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
