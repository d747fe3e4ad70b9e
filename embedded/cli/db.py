"""``testbed db upgrade``: bring the control plane's database to the newest schema (Alembic revisions).

The control plane upgrades its database when it starts (under a lock, so replicas starting
together do not race); this runs the same upgrade by hand, e.g. before rolling out a new image.
It runs ``python -m operators.control_plane.db.migrate`` (the core does not import the operators).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

from testbed.cli.common import CliError, add_command
from testbed.local_address import testbed_home

LOCAL_SETTINGS = "control-plane.json"  # written by `testbed up` into the state folder


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    if args.database_url:
        where = ["--database-url", args.database_url]
    else:
        settings = args.settings or testbed_home() / LOCAL_SETTINGS
        if not args.settings and not settings.exists():
            raise CliError(f"no local testbed settings at {settings}: give --settings FILE or --database-url URL")
        where = ["--settings", str(settings)]
    done = subprocess.run(
        [sys.executable, "-m", "operators.control_plane.db.migrate", *where], capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise CliError(lines[-1] if lines else f"database upgrade failed (exit {done.returncode})")
    print(done.stdout.strip())
    return 0


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="the control plane's database").add_subparsers(dest="db_command", required=True)
    p = add_command(
        db, "upgrade", cmd_db_upgrade, "upgrade the control plane's database to the newest schema", json_flag=False
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--settings", metavar="FILE", help="the control plane's settings JSON (default: the local testbed's)"
    )
    where.add_argument(
        "--database-url", metavar="URL", help="SQLAlchemy URL, e.g. postgresql+psycopg2://user:pw@host/db"
    )
