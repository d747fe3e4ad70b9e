"""The local testbed's lifecycle times: a cold ``up``, an idempotent ``up`` (nothing restarted) and
``down`` (every process of the instance gone), with Ray sized for 2 CPUs on 127.0.0.1.

Run: ``.venv/bin/python tests/benchmarks/bench_local_testbed.py``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TESTBED_STACK_DIR", str(REPO / "tests" / "stacks"))

from embedded import RAY_LOOPBACK_ENV, LocalTestbed, instance_processes  # noqa: E402
from tests.benchmarks.scratch import scratch_home  # noqa: E402

REGION = "gyeongnam"


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    os.environ.update(RAY_LOOPBACK_ENV)
    with scratch_home("tb-bench") as home:
        os.environ["TESTBED_HOME"] = str(home)
        testbed = LocalTestbed(home)
        try:
            cold = timed(lambda: testbed.up(region=REGION, num_cpus=2))
            again = timed(lambda: testbed.up(region=REGION))
            instance = testbed.load_state().instance
            down = timed(testbed.down)
            left = instance_processes(instance)
        finally:
            testbed.down()
    print(f"up_cold_seconds={cold:.1f}")
    print(f"up_idempotent_seconds={again:.1f}")
    print(f"down_seconds={down:.1f}")
    print(f"processes_left_after_down={len(left)}")


if __name__ == "__main__":
    main()
