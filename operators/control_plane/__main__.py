"""Run the control plane: ``python -m operators.control_plane --settings FILE``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from operators.control_plane.app import create_app
from testbed.settings import ControlPlaneSettings, SettingsError
from testbed.config import ConfigError

# h11 parses requests, named rather than left to uvicorn's "auto" (which takes httptools wherever it is installed): h11
# refuses a request head over 16 KiB with a 400, where uvicorn's httptools protocol buffers a header of any length,
# so anyone who can reach the port could fill the server's memory. httptools would save about a quarter of the event
# loop's CPU a submit, and uvloop nothing measurable (docs/operators/scale.md, "The server's HTTP parts").
SERVER_PARTS = {"http": "h11", "loop": "asyncio"}


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
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False, **SERVER_PARTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
