"""The cross-region program report as files and text: a table, CSV (UTF-8 with BOM), HTML, XLSX and a chart."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path
from typing import Any

from testbed import tables
from testbed.program import ProgramReport


def _won(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


FUNDING_HEADERS = [
    "REGION",
    "SOURCE",
    "COST ITEM",
    "BUDGET KRW",
    "GRANTED KRW",
    "EXECUTED KRW",
    "집행률",
    "FORECAST AT END",
    "UNSPENT AT END",
]
TENANT_HEADERS = [
    "REGION",
    "TENANT",
    "COST ITEM",
    "GRANT KRW",
    "CHARGED KRW",
    "집행률",
    "BURN KRW/DAY",
    "FORECAST AT END",
    "UNSPENT AT END",
    "EXHAUSTED BY",
    "IDLE GPU-H",
]


def funding_rows(report: ProgramReport) -> list[list[Any]]:
    return [
        [
            f.region + (" (stale)" if f.stale else ""),
            f.source,
            f.cost_item or "(total)",
            _won(f.budget_krw),
            _won(f.granted_krw),
            _won(f.executed_krw),
            _rate(f.execution_rate),
            _won(f.forecast_executed_krw),
            _won(f.unspent_at_end_krw),
        ]
        for f in report.funding
    ]


def tenant_rows(report: ProgramReport) -> list[list[Any]]:
    return [
        [
            t.region + (" (stale)" if t.stale else ""),
            t.tenant,
            t.cost_item or "",
            _won(t.grant_krw),
            _won(t.charged_krw),
            _rate(t.execution_rate),
            _won(t.burn_krw_per_day),
            _won(t.forecast_end_krw),
            _won(t.unspent_at_end_krw),
            str(t.forecast_exhaustion_date or ""),
            f"{t.idle_gpu_hours:.2f}",
        ]
        for t in report.tenants
    ]


def region_rows(report: ProgramReport) -> list[list[Any]]:
    return [
        [r.region, r.status, r.last_good_at.isoformat(timespec="seconds") if r.last_good_at else "never", r.error or ""]
        for r in report.regions
    ]


REGION_HEADERS = ["REGION", "STATUS", "LAST GOOD ANSWER", "ERROR"]


def render_report(report: ProgramReport) -> str:
    return "\n\n".join(
        [
            f"program report at {report.generated_at.isoformat(timespec='seconds')}",
            tables.render_table(REGION_HEADERS, region_rows(report)),
            tables.render_table(FUNDING_HEADERS, funding_rows(report), right=range(3, 9)),
            tables.render_table(TENANT_HEADERS, tenant_rows(report), right=range(3, 11)),
        ]
    )


def _sheets(report: ProgramReport) -> dict[str, tuple[list[str], list[list[Any]]]]:
    return {
        "regions": (REGION_HEADERS, region_rows(report)),
        "funding": (FUNDING_HEADERS, funding_rows(report)),
        "tenants": (TENANT_HEADERS, tenant_rows(report)),
    }


def write_csv(report: ProgramReport, path: str | Path) -> None:
    """One CSV (UTF-8 with BOM, for spreadsheet programs): a ``section`` column, then each table's columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for section, (headers, rows) in _sheets(report).items():
        writer.writerow(["SECTION", *headers])
        writer.writerows([[section, *row] for row in rows])
    Path(path).write_text(buffer.getvalue(), encoding="utf-8-sig")


def write_html(report: ProgramReport, path: str | Path) -> None:
    parts = [
        f'<!doctype html><html lang="ko"><meta charset="utf-8"><title>Program report</title>'
        f"<h1>Program report, {html.escape(report.generated_at.isoformat(timespec='seconds'))}</h1>"
    ]
    for section, (headers, rows) in _sheets(report).items():
        parts.append(
            f'<h2>{section}</h2><table border="1"><tr>'
            + "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers)
            + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    Path(path).write_text("".join(parts) + "</html>\n", encoding="utf-8")


def write_xlsx(report: ProgramReport, path: str | Path) -> None:
    """One sheet per table (regions, funding, tenants)."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for section, (headers, rows) in _sheets(report).items():
        sheet = book.create_sheet(section)
        sheet.append(headers)
        for row in rows:
            sheet.append(row)
    book.save(path)


def plot_report(report: ProgramReport, path: str | Path) -> None:
    """Execution rate per region and funding source (bars), with the forecast rate at the period's end (marks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = [f for f in report.funding if f.cost_item is None and f.budget_krw]
    labels = [f"{f.region}{' *' if f.stale else ''}\n{f.source}" for f in totals]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(totals) + 2), 4))
    xs = list(range(len(totals)))
    ax.bar(xs, [f.granted_krw / f.budget_krw for f in totals], color="lightgrey", label="granted")
    ax.bar(
        xs,
        [f.executed_krw / f.budget_krw for f in totals],
        width=0.5,
        color="tab:blue",
        label="executed (execution rate)",
    )
    ax.scatter(
        xs,
        [f.forecast_executed_krw / f.budget_krw for f in totals],
        color="tab:red",
        zorder=3,
        label="forecast at period end",
    )
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of budget")
    down = [r.region for r in report.regions if r.status != "ok"]
    ax.set_title(
        "Execution rate per region and funding source"
        + (f" (no answer: {', '.join(down)}; * = last good answer)" if down else ""),
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
