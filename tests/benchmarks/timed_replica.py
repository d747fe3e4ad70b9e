"""A control-plane replica that also times admission, for benchmarks: ``python timed_replica.py --settings FILE``.

It serves what ``python -m operators.control_plane`` serves, with ``plane.admit_with_balance`` timed (the same
measurement as bench_control_plane.py's) and the samples, in seconds, at ``GET /_bench/admission``;
``GET /_bench/threads``: the CPU seconds its threads have used so far, by thread name (Linux); on PostgreSQL,
``GET /_bench/queries``: the queries (round trips) it has sent to the database so far (``tests.postgres.record_queries``).

With ``TESTBED_BENCH_ADMISSION=memory`` it serves the HTTP layer alone: each tenant's first job is admitted for real
(stored; the request hands it to no dispatch thread) and every later submit of the tenant is answered with that
admission again, from memory -- the same requests, token check, body validation and answer, without admission's
database work, dispatch or the sync's work on the jobs.
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
from operators.control_plane.room import NO_ROOM_PREFIX  # noqa: E402
from tests.benchmarks.admission_load import time_admissions  # noqa: E402
from tests.postgres import record_queries  # noqa: E402

ADMISSION_ENV = "TESTBED_BENCH_ADMISSION"


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


def answer_from_memory(plane) -> None:
    """Admit each tenant's first job for real (its request dispatches nothing) and answer its later submits with it."""
    admit = plane.admit_with_balance
    first: dict[str, object] = {}
    lock = threading.Lock()

    def remembered(principal, spec):
        with lock:
            admitted = first.get(principal.subject)
        if admitted is None:
            admitted = admit(principal, spec)
            admitted.row.message = f"{NO_ROOM_PREFIX} (benchmark: the HTTP layer alone)"
            with lock:
                first.setdefault(principal.subject, admitted)
        return admitted

    plane.admit_with_balance = remembered


def timed_app(*args, **kwargs) -> FastAPI:
    app = create_app(*args, **kwargs)
    plane = app.state.plane
    if os.environ.get(ADMISSION_ENV) == "memory":
        answer_from_memory(plane)
    samples = time_admissions(plane)
    app.add_api_route("/_bench/admission", lambda: samples, methods=["GET"])
    app.add_api_route("/_bench/threads", thread_cpu_seconds, methods=["GET"])
    if plane.store.engine.dialect.name == "postgresql":
        sent = record_queries(plane.store.engine)
        app.add_api_route("/_bench/queries", lambda: len(sent), methods=["GET"])
    return app


if __name__ == "__main__":
    control_plane.create_app = timed_app
    sys.exit(control_plane.main())
