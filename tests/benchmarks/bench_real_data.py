"""Benchmark: every training template on a real data set an installed package ships (tests/workloads/real_data.py),
its neural model (the same loop as a job, without Ray) beside its classical baselines and its trivial baseline on
the same split. Prints one table row per template and, per template, which model a job would register.

Run by ``make bench`` (about a minute on 2 cores): ``python tests/benchmarks/bench_real_data.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testbed.templates import get_template  # noqa: E402
from tests.workloads.real_data import REAL_SETS  # noqa: E402
from workloads.baselines import best_baseline, fit_baselines, matches  # noqa: E402
from workloads.loop import predict  # noqa: E402
from workloads.plain import fit_plain  # noqa: E402
from workloads.train import prepare  # noqa: E402


def main() -> int:
    import torch

    print("| template | data set | metric | neural | best classical | trivial | margin | registered |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-real-") as folder:
        for template, (write, name, description, params) in REAL_SETS.items():
            started = time.perf_counter()
            path = write(Path(folder) / name)
            resolved = get_template(template).resolve({**params, "data_path": str(path)})
            prep = prepare(template, resolved)
            model, _ = fit_plain(prep, threads=1)
            task, m = prep.task, prep.task.metric
            neural = task.metrics(predict(model, prep.val.x, torch.device("cpu")), prep.val.y)[m]
            best = best_baseline(task, fit_baselines(template, task, prep.train, prep.val, prep.class_weights, 0, 1))
            margin = float(resolved["match_margin"])
            registered = "neural" if matches(task, neural, best.metrics[m], margin) else "classical"
            print(
                f"| {template} | {description} | val {m} | {neural:.4f} | {best.metrics[m]:.4f} ({best.name}) | "
                f"{prep.baseline:.4f} ({task.baseline_name}) | {margin:.0%} | {registered} |  "
                f"<!-- {time.perf_counter() - started:.0f}s -->",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
