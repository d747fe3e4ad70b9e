"""Dispatch at scale (issue: admission at scale): 10,000 queued jobs over 30 tenants, no-op backend.

The queue is written straight into the job table (as admission leaves it; this figure is the
reconciler's, not admission's), ``max_queued_jobs_per_tenant`` raised to hold it. Each tenant may
run ``--running`` jobs at once; each job "runs" ``--job-seconds`` in the no-op backend. Then the
control plane's reconciler runs for ``--seconds`` (SQLite, one replica, the default 0.25 s sync).

- ``reconciler_round_seconds_p50/p99/max``: a full sync round (refresh the dispatched jobs, the money
  round, dispatch what fits).
- ``dispatch_latency_p99_seconds`` (target <= 1 s): per tenant, the k-th job handed to the backend
  after its first ``--running`` took the slot of the (k - running)-th job to end; the time from that
  end (the no-op backend's own end time) to the dispatch.
- ``control_plane_rss_mib``: the process's resident memory with the queue loaded and the reconciler
  running (and before the queue was written, for comparison).

Run: ``.venv/bin/python tests/benchmarks/bench_dispatch_scale.py [--jobs 10000] [--tenants 30] [--seconds 40]``
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from operators.control_plane.plane import ControlPlane  # noqa: E402
from operators.control_plane.db.models import JobRow  # noqa: E402
from testbed.jobs import JobSpec, JobStatus  # noqa: E402
from tests.benchmarks.admission_load import percentile  # noqa: E402
from tests.replicas import noop_settings, stack_with_tenants  # noqa: E402
from tests.benchmarks.scratch import scratch_home  # noqa: E402


def queue(plane: ControlPlane, tenants: list[str], jobs: int, job_seconds: float) -> None:
    """``jobs`` queued command jobs, round-robin over the tenants, oldest first."""
    now = time.time()
    spec = JobSpec(entrypoint=f"sleep {job_seconds:g}", cpus=1, memory=2**30, max_runtime_seconds=3600)
    stored = {**spec.model_dump(mode="json", exclude={"entrypoint"}), "params": {}, "kind": "command"}  # as admission
    rows = []
    for i in range(jobs):
        tenant = tenants[i % len(tenants)]
        rows.append(
            JobRow(
                id=f"job-{uuid.uuid4().hex[:16]}",
                tenant=tenant,
                region=plane.stack.region.id,
                name="sweep",
                experiment=f"{tenant}/sweep",
                status=JobStatus.PENDING.value,
                entrypoint=f"sleep {job_seconds:g}",
                template=None,
                spec=stored,
                cpus=1.0,
                gpus=0,
                gpu_model=None,
                memory_bytes=2**30,
                submitted_at=now + i * 1e-6,
                dispatched=False,
                message="queued",
            )
        )
    for i in range(0, len(rows), 1000):
        with plane.store.write_session() as s:
            s.add_all(rows[i : i + 1000])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=30)
    parser.add_argument("--running", type=int, default=5, help="jobs each tenant may run at once")
    parser.add_argument("--job-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    with scratch_home("tb-dispatch") as home:
        return bench(args, home)


def bench(args: argparse.Namespace, home: Path) -> int:
    stack, tenants = stack_with_tenants(home, args.tenants, {"max_running_jobs": args.running})
    settings = noop_settings(home, stack, f"sqlite:///{home / 'cp.db'}", max_queued_jobs_per_tenant=args.jobs)
    plane = ControlPlane(settings)
    me = psutil.Process()
    rss_before = me.memory_info().rss
    queue(plane, tenants, args.jobs, args.job_seconds)
    rounds: list[float] = []
    sync_once = plane.dispatcher.sync_once

    def timed_round(starting_only: bool = False) -> bool:
        start = time.perf_counter()
        try:
            return sync_once(starting_only)
        finally:
            if not starting_only:
                rounds.append(time.perf_counter() - start)

    plane.dispatcher.sync_once = timed_round
    rss_peak = 0
    try:
        plane.start()
        stop_at = time.monotonic() + args.seconds
        while time.monotonic() < stop_at:
            time.sleep(1.0)
            rss_peak = max(rss_peak, me.memory_info().rss)
    finally:
        plane.shutdown()
    launched = list(plane.backend._jobs.values())  # noqa: SLF001 -- the no-op backend's record of what it ran
    latencies = []
    for tenant in tenants:
        mine = sorted(job.submitted_at for job in launched if job.tenant == tenant)
        ends = sorted(start + args.job_seconds for start in mine)
        latencies += [max(0.0, mine[k] - ends[k - args.running]) for k in range(args.running, len(mine))]
    print(
        f"dispatch_scale_jobs={args.jobs} tenants={args.tenants} running_per_tenant={args.running} "
        f"job_seconds={args.job_seconds:g} dispatched={len(launched)} in {args.seconds:g} s"
    )
    print(f"reconciler_rounds={len(rounds)}")
    if rounds:
        print(f"reconciler_round_seconds_p50={percentile(rounds, 50):.3f}")
        print(f"reconciler_round_seconds_p99={percentile(rounds, 99):.3f}")
        print(f"reconciler_round_seconds_max={max(rounds):.3f}")
    else:
        print(f"reconciler_round_seconds_p50=nan  # no full round ended within {args.seconds:g} s")
    if latencies:
        print(f"dispatch_latency_p50_seconds={percentile(latencies, 50):.3f}")
        print(f"dispatch_latency_p99_seconds={percentile(latencies, 99):.3f}  # {len(latencies)} freed slots")
    print(f"control_plane_rss_mib={rss_peak / 2**20:.0f}  # {rss_before / 2**20:.0f} before the queue was written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
