"""``testbed statements show|close|export``: monthly statements per tenant, funding source and cost item.

``close`` (operator) freezes a month; ``export`` writes the month's CSV (UTF-8 with BOM) and XLSX and a
PDF per tenant into a folder. An open month exports as provisional (가집계), and its file names say so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from testbed.cli.common import CliError, add_command, connect, emit, print_json
from testbed.statements import Statement, check_month
from testbed.tables import render_table


def _month(value: str) -> str:
    try:
        return check_month(value)
    except ValueError as exc:
        raise CliError(f"--month: {exc}") from None


def _table(statement: Statement) -> str:
    rows = [
        [
            r.status,
            r.tenant,
            r.funding_source,
            r.cost_item,
            r.pool,
            r.gpu_hours,
            r.jobs,
            f"{r.supply_krw:,}",
            f"{r.vat_krw:,}",
            f"{r.total_krw:,}",
            "" if r.grant_remaining_krw is None else f"{r.grant_remaining_krw:,}",
        ]
        for t in statement.tenants
        for r in t.rows
    ]
    return render_table(
        [
            "STATUS",
            "TENANT",
            "FUNDING",
            "COST ITEM",
            "POOL",
            "GPU H",
            "JOBS",
            "SUPPLY KRW",
            "VAT KRW",
            "TOTAL KRW",
            "REMAINING KRW",
        ],
        rows,
        right=range(5, 11),
    )


def cmd_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return emit(args, client.statement(_month(args.month), args.tenant), _table)


def cmd_close(args: argparse.Namespace) -> int:
    with connect(args, operator=True) as client:
        closed = client.close_month(_month(args.month))
    return emit(
        args,
        closed,
        lambda c: (
            f"closed {c.month}: {c.tenants} tenants, ledger entries up to "
            f"#{c.last_ledger_id}, rows sha256 {c.rows_sha256}"
        ),
    )


def cmd_export(args: argparse.Namespace) -> int:
    month = _month(args.month)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {args.out}: cannot create the folder: {exc.strerror}") from None
    with connect(args, operator=True) as client:
        statement = client.statement(month, args.tenant)
        suffix = "-provisional" if statement.provisional else ""
        written = [
            client.download_statement(month, fmt, out / f"statement-{month}{suffix}.{fmt}", args.tenant)
            for fmt in ("csv", "xlsx")
        ]
        written += [
            client.download_statement(month, "pdf", out / f"statement-{month}-{t.tenant}{suffix}.pdf", t.tenant)
            for t in statement.tenants
        ]
    if args.json:
        print_json(statement)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if statement.provisional:
        print(f"note: {month} is not closed: these files are provisional (가집계)", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    statements = sub.add_parser("statements", help="monthly statements (close, export)").add_subparsers(
        dest="statements_command", required=True
    )
    for name, handler, text in (
        ("show", cmd_show, "print a month's statement rows (yours, or every tenant's with the operator token)"),
        ("close", cmd_close, "close a month (operator): its statement never changes afterwards"),
        ("export", cmd_export, "write the month's CSV, XLSX and one PDF per tenant into --out DIR"),
    ):
        p = add_command(statements, name, handler, text)
        p.add_argument("--month", required=True, help="YYYY-MM (Asia/Seoul)")
        if name != "close":
            p.add_argument("--tenant", help="only this tenant")
        if name == "export":
            p.add_argument("--out", required=True, metavar="DIR", help="folder to write the files into")
