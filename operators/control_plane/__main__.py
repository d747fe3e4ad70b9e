"""Run the control plane: ``python -m operators.control_plane --settings FILE``."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from typing import Any

import uvicorn

from operators.control_plane.app import create_app
from operators.control_plane.http_parser import BoundedHttpToolsProtocol
from testbed.settings import ControlPlaneSettings, SettingsError
from testbed.config import ConfigError

# httptools parses requests and uvloop runs the event loop: together about a fifth less of the event loop's CPU a
# submit than h11 on asyncio's loop (docs/operators/scale.md, "The server's HTTP parts"). uvicorn's own httptools
# protocol buffers a request head of any length, so the protocol is ours, which refuses a head over 16 KiB (h11's
# bound) with a 431; named rather than left to uvicorn's "auto".
SERVER_PARTS: dict[str, Any] = {"http": BoundedHttpToolsProtocol, "loop": "uvloop"}

# Python's cyclic garbage collector, set for a server: each request makes thousands of short-lived objects (ORM rows,
# statements' results, pydantic models) and the heap is mostly what the start built (modules, the app, SQLAlchemy's
# metadata), nearly all of it kept until the process ends. A young collection every 10,000 objects (Python's default:
# 700), a full one about 30 times less often, and that one over only what was made since the start (frozen out of
# every collection): the collections took 0.22-0.29 ms of every job's 4-6 ms under load, and each full one stopped
# every thread for 100-135 ms (docs/operators/scale.md, "The garbage collector").
GC_THRESHOLDS = (10_000, 20, 10)


def tune_gc() -> None:
    """Freeze what the start built out of the collector's passes, then collect less often (:data:`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m operators.control_plane")
    parser.add_argument(
        "--settings",
        default=os.environ.get("TESTBED_CONTROL_PLANE_SETTINGS"),
        help="settings JSON file (default: $TESTBED_CONTROL_PLANE_SETTINGS)",
    )
    args = parser.parse_args(argv)
    if not args.settings:
        parser.error("--settings is required (or set TESTBED_CONTROL_PLANE_SETTINGS)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ControlPlaneSettings.from_file(args.settings)
        app = create_app(settings)
    except (SettingsError, ConfigError, ValueError) as exc:
        print(f"control plane: {exc}", file=sys.stderr)
        return 2
    tune_gc()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False, **SERVER_PARTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
