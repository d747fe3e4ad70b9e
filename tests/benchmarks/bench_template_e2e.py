"""Benchmark: a small template job as a company feels it, end to end, against the same training as a plain Python
process including its own start-up, in the same run.

- job: ``client.submit(template=..., params={epochs: 5, baselines: false}, cpus=1)`` on the local testbed (real
  control plane, Ray job, MLflow), from the submit call until the job is SUCCEEDED and its log holds the
  ``result:`` line;
- plain: ``python -c`` that imports the workloads, prepares the same data and trains the same model for the same
  epochs with the same loop (``workloads.plain.fit_plain``), start-up included.

Prints ``ray_train_e2e_overhead_ratio`` (job over plain; target <= 1.5) and where the job's seconds go: before it
ran (admission, dispatch, Ray job start), the driver's start-up until the loop, the loop, and what follows it
(model logging and registration). Run by ``make bench`` (starts and stops its own testbed under a temporary
``TESTBED_HOME``): ``python tests/benchmarks/bench_template_e2e.py [--template T]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testbed.client import TestbedClient  # noqa: E402
from embedded import RAY_LOOPBACK_ENV, LocalTestbed  # noqa: E402
from tests.benchmarks.scratch import scratch_home  # noqa: E402

PLAIN = """
import sys, time
from testbed.templates import get_template
from workloads.train import prepare
from workloads.plain import fit_plain
params = get_template(sys.argv[1]).resolve({"epochs": int(sys.argv[2]), "baselines": False})
model, stats = fit_plain(prepare(sys.argv[1], params), threads=1)
print(f"loop_seconds={stats.loop_seconds:.3f}")
"""


def ts(text: str | None) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="tabular-quality")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tenant", default="changwon-precision")
    args = parser.parse_args(argv)
    os.environ.update(RAY_LOOPBACK_ENV)

    def plain() -> float:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PLAIN, args.template, str(args.epochs)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return time.perf_counter() - started

    with scratch_home("tb-bench-e2e") as home:
        os.environ["TESTBED_HOME"] = str(home)
        testbed = LocalTestbed(home)
        try:
            plain_before = plain()
            testbed.up(region="gyeongnam", num_cpus=2)
            client = TestbedClient(testbed.load_state().control_plane_url, testbed.token(args.tenant))
            # warm: the tenant's MLflow login and experiment set-up
            client.submit(template="smoke", params={"epochs": 1})
            started = time.perf_counter()
            wall_start = time.time()
            job = client.submit(template=args.template, params={"epochs": args.epochs, "baselines": False}, cpus=1)
            job = client.wait(job.id, timeout=900, poll=0.2)
            logs = client.logs(job.id).logs
            while "result:" not in logs and time.perf_counter() - started < 900:
                time.sleep(0.2)
                logs = client.logs(job.id).logs
            e2e = time.perf_counter() - started
            assert job.status.value == "SUCCEEDED", logs[-3000:]
            plain_after = plain()
        finally:
            testbed.down()
    plain_e2e = (plain_before + plain_after) / 2
    loop = next(
        (float(w.split("=")[1]) for line in logs.splitlines() for w in line.split() if w.startswith("loop_seconds=")),
        None,
    )
    queued = ts(job.started_at) - wall_start
    print(f"template={args.template} epochs={args.epochs} cpus=1 job={job.id}")
    print(
        f"job_e2e_seconds={e2e:.2f} plain_process_e2e_seconds={plain_e2e:.2f} (before/after {plain_before:.2f}/{plain_after:.2f})"
    )
    print(f"job_seconds_before_running={queued:.2f}  # admission, dispatch, Ray job submission until RUNNING")
    print(
        f"job_seconds_running_to_result={e2e - queued:.2f}  # driver start-up, data, loop{'' if loop is None else f' ({loop:.2f} s)'}, "
        "MLflow run, model logging and registration"
    )
    timing = next(
        (line for line in logs.splitlines() if line.startswith("timing:")), "timing: (no timing line in the log)"
    )
    print(f"job_driver_{timing}  # inside the job: the engine, its training loop, and driver start to loop end")
    print(
        f"ray_train_e2e_overhead_ratio={e2e / plain_e2e:.3f}  # submit->result line over a plain process; target <= 1.5"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
