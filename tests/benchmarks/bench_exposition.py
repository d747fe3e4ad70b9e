"""Benchmark: one /metrics exposition (what the endpoint runs: collect + render) for 1,000 tenants with 20 jobs each (temp SQLite store).

Run by ``make bench``; prints, for the same registry (same collectors, same ledger) in the same run,
the median seconds of the hand-written writer (``exposition_seconds_1000_tenants``, target <= 0.05)
and of prometheus_client's ``generate_latest`` (``exposition_client_python_seconds_1000_tenants``),
and ``exposition_vs_client_python_ratio`` = client_python / hand-written (> 1: hand-written is
faster). The two alternate which goes first on every scrape. Each tenant has 17 finished jobs
(folded into the ledger's totals), 2 running and 1 pending, on a synthetic region whose tenants
are fictional.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import generate_latest

from operators.control_plane.store import JobRow, Store
from operators.metering.exporter import make_registry, render_text
from operators.metering.ledger import Ledger
from testbed.config import StackConfig, load_region

FINISHED = ["SUCCEEDED"] * 13 + ["FAILED"] * 3 + ["STOPPED"]


def synthetic_stack(tenants: int) -> StackConfig:
    """Gyeongnam's stack with ``tenants`` fictional sample tenants cloned from its first one."""
    base = load_region("gyeongnam")
    template = base.tenants[0].model_dump()
    clones = [{**template, "id": f"sample-co-{i:04d}", "name": f"Sample Co {i} (fictional)"} for i in range(tenants)]
    return StackConfig.model_validate({**base.model_dump(), "tenants": clones})


def fill(store: Store, stack: StackConfig, jobs_per_tenant: int, now: float) -> None:
    statuses = (FINISHED + ["RUNNING", "RUNNING", "PENDING"])[:jobs_per_tenant]
    rows = []
    for t in stack.tenants:
        model = stack.pool_for(t).gpu_model
        for j, status in enumerate(statuses):
            started = None if status == "PENDING" else now - 3600 - j * 60
            ended = started + 1800 if status in ("SUCCEEDED", "FAILED", "STOPPED") else None
            rows.append(dict(
                id=f"job-{t.id}-{j}", tenant=t.id, region=stack.region.id, name="bench", experiment=f"{t.id}/bench",
                status=status, entrypoint="true", template=None, spec={}, cpus=4.0, gpus=j % 2, gpu_model=model if j % 2 else None,
                memory_bytes=16 * 2**30, submitted_at=now - 7200, started_at=started, ended_at=ended,
                last_seen_at=now if status == "RUNNING" else ended, dispatched=status != "PENDING", message="",
            ))
    with store.session() as s:
        s.execute(JobRow.__table__.insert(), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=15)
    args = parser.parse_args(argv)
    stack = synthetic_stack(args.tenants)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
        ledger = Ledger(store)
        fill(store, stack, args.jobs, time.time())
        ledger.install()  # folds the finished jobs into the totals, as the terminal hook would have
        registry = make_registry(ledger, lambda: stack)
        writers = {"hand_written": render_text, "client_python": generate_latest}
        bodies = {name: write(registry) for name, write in writers.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in writers}
        order = list(writers)
        for _ in range(args.scrapes):
            for name in order:
                began = time.perf_counter()
                bodies[name] = writers[name](registry)
                times[name].append(time.perf_counter() - began)
            order.reverse()  # alternate which writer scrapes first
        store.close()
    lines = {name: len(body.splitlines()) for name, body in bodies.items()}
    assert len(set(lines.values())) == 1, f"the writers disagree: {lines}"  # same exposition, timed twice
    medians = {name: statistics.median(values) for name, values in times.items()}
    samples = sum(1 for line in bodies["hand_written"].splitlines() if not line.startswith(b"#"))
    for name, values in times.items():
        print(f"{name}: samples={samples} scrapes={args.scrapes} min={min(values):.4f} max={max(values):.4f}",
              file=sys.stderr)
    print(f"exposition_seconds_{args.tenants}_tenants={medians['hand_written']:.4f}")
    print(f"exposition_client_python_seconds_{args.tenants}_tenants={medians['client_python']:.4f}")
    print(f"exposition_vs_client_python_ratio={medians['client_python'] / medians['hand_written']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
