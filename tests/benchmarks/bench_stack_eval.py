"""Time to evaluate each region stack under Pulumi mocks, and a generated 100-tenant stack.

Run: .venv/bin/python tests/benchmarks/bench_stack_eval.py   (prints stack_eval_seconds_<name>=X)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.infra.harness import all_regions, generated_tenants_document, run_region  # noqa: E402


def main() -> None:
    for region in all_regions():
        run = run_region(region)
        print(f"stack_eval_seconds_{region}={run.seconds:.3f}", flush=True)
    run = run_region("gyeongnam", generated_tenants_document("gyeongnam", 100))
    print(f"stack_eval_seconds_100_tenants={run.seconds:.3f}", flush=True)


if __name__ == "__main__":
    main()
