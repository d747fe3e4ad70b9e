"""A control-plane replica that also times admission, for benchmarks: ``python timed_replica.py --settings FILE``.

It serves what ``python -m operators.control_plane`` serves, with ``plane.admit`` timed (the same
measurement as bench_control_plane.py's) and the samples, in seconds, at ``GET /_bench/admission``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fastapi import FastAPI  # noqa: E402

from operators.control_plane import __main__ as control_plane  # noqa: E402
from operators.control_plane.app import create_app  # noqa: E402
from tests.benchmarks.admission_load import time_admissions  # noqa: E402


def timed_app(*args, **kwargs) -> FastAPI:
    app = create_app(*args, **kwargs)
    plane = app.state.plane
    samples = time_admissions(plane)
    app.add_api_route("/_bench/admission", lambda: samples, methods=["GET"])
    return app


if __name__ == "__main__":
    control_plane.create_app = timed_app
    sys.exit(control_plane.main())
