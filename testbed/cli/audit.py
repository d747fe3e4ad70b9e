"""``testbed audit list|verify``: the control plane's hash-chained audit trail (operator).

``verify`` recomputes the chain: through the control plane (``--url``/``--token``), or straight from
the database (``--database-url`` / ``--settings``: it runs ``python -m operators.control_plane.audit``,
the core does not import the operators), so a row edited or removed behind the platform's back is found.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from typing import Any

from testbed.audit import AuditEntry, AuditPage, AuditVerification
from testbed.cli.common import CliError, add_command, connect, print_json
from testbed.tables import render_table

EXIT_TAMPERED = 3


def _when(value: str | None) -> float | None:
    """An ISO date or time (``2026-03-01``, ``2026-03-01T09:00+09:00``; naive = Asia/Seoul) as epoch seconds."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo

    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CliError(
            f"--since/--until {value!r}: give an ISO date or time, e.g. 2026-03-01 or 2026-03-01T09:00+09:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo("Asia/Seoul"))
    return parsed.timestamp()


def _kst(ts: float) -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(ts, ZoneInfo("Asia/Seoul")).strftime("%Y-%m-%d %H:%M:%S")


def _row(entry: AuditEntry) -> list[Any]:
    detail = json.dumps(entry.detail, ensure_ascii=False, sort_keys=True)
    return [
        entry.seq,
        _kst(entry.at),
        entry.kind,
        entry.tenant or "-",
        entry.actor or "-",
        entry.job_id or "-",
        detail if len(detail) <= 100 else detail[:97] + "...",
    ]


def cmd_audit_list(args: argparse.Namespace) -> int:
    filters = {"tenant": args.tenant, "kind": args.kind, "since": _when(args.since), "until": _when(args.until)}
    with connect(args, operator=True) as client:
        entries = list(client.iter_audit(**filters))
    if args.json:
        print_json(AuditPage(entries=entries))
        return 0
    print(render_table(["SEQ", "AT (KST)", "KIND", "TENANT", "ACTOR", "JOB", "DETAIL"], [_row(e) for e in entries]))
    return 0


def _verify_database(args: argparse.Namespace) -> AuditVerification:
    where = ["--database-url", args.database_url] if args.database_url else ["--settings", args.settings]
    extra = ["--expect-head", args.expect_head] if args.expect_head else []
    done = subprocess.run(
        [sys.executable, "-m", "operators.control_plane.audit", *where, *extra], capture_output=True, text=True
    )
    if done.returncode not in (0, 1):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise CliError(lines[-1] if lines else f"audit verification failed (exit {done.returncode})")
    return AuditVerification.model_validate_json(done.stdout)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    if args.database_url or args.settings:
        result = _verify_database(args)
    else:
        with connect(args, operator=True) as client:
            result = client.audit_verify(args.expect_head)
    if args.json:
        print_json(result)
    elif result.ok:
        print(f"audit trail ok: {result.rows} rows, head {result.head_seq} {result.head_hash}")
    else:
        print(f"audit trail BROKEN: {len(result.problems)} problem(s) in {result.rows} rows", file=sys.stderr)
        for problem in result.problems:
            print(f"  row {problem.seq if problem.seq is not None else '-'}: {problem.problem}", file=sys.stderr)
    return 0 if result.ok else EXIT_TAMPERED


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail (operator)").add_subparsers(
        dest="audit_command", required=True
    )
    p = add_command(audit, "list", cmd_audit_list, "list audit rows, oldest first (operator)")
    p.add_argument("--tenant", help="only this tenant's rows")
    p.add_argument("--kind", help="a kind (job.refused) or a prefix ending in '.' (token.)")
    p.add_argument("--since", help="ISO date or time (Asia/Seoul unless it names a zone), inclusive")
    p.add_argument("--until", help="ISO date or time, exclusive")
    p = add_command(
        audit,
        "verify",
        cmd_audit_verify,
        f"recompute the hash chain; exit {EXIT_TAMPERED} if a row was edited, removed or inserted",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--database-url", metavar="URL", help="read the database directly (SQLite or PostgreSQL URL)")
    where.add_argument("--settings", metavar="FILE", help="read the database of this control-plane settings JSON")
    p.add_argument(
        "--expect-head", metavar="HASH", help="a head hash an earlier verify printed: it must still be there"
    )
