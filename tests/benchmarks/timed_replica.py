"""A control-plane replica that also times admission, for benchmarks: ``python timed_replica.py --settings FILE``.

It serves what ``python -m operators.control_plane`` serves, with ``plane.admit_with_balance`` timed (the same
measurement as bench_control_plane.py's) and the samples, in seconds, at ``GET /_bench/admission``;
``GET /_bench/threads``: the CPU seconds its threads have used so far, by thread name (Linux).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fastapi import FastAPI  # noqa: E402

from operators.control_plane import __main__ as control_plane  # noqa: E402
from operators.control_plane.app import create_app  # noqa: E402
from tests.benchmarks.admission_load import time_admissions  # noqa: E402


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used by this process's threads, summed by name without its number
    (``admit_0``, ``admit_1`` -> ``admit``); threads Python did not start count as ``native``."""
    names = {t.native_id: re.sub(r"[-_ ]?\d+$", "", t.name) for t in threading.enumerate()}
    ticks = os.sysconf("SC_CLK_TCK")
    used: Counter[str] = Counter()
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else []:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        used[names.get(int(tid), "native")] += (int(fields[11]) + int(fields[12])) / ticks
    return dict(used)


def timed_app(*args, **kwargs) -> FastAPI:
    app = create_app(*args, **kwargs)
    plane = app.state.plane
    samples = time_admissions(plane)
    app.add_api_route("/_bench/admission", lambda: samples, methods=["GET"])
    app.add_api_route("/_bench/threads", thread_cpu_seconds, methods=["GET"])
    return app


if __name__ == "__main__":
    control_plane.create_app = timed_app
    sys.exit(control_plane.main())
