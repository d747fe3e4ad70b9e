"""The program office's report across regions, built on its own machine from each region's API.

``testbed program report --regions regions.yaml`` reads, with each region's read-only program-office token,
``GET /v1/budget`` (budget per funding source, fiscal period) and ``GET /v1/usage`` (every tenant's grant,
charges, holds, burn, idle GPU-hours), and makes one table: budget and execution per funding source and cost
item, execution rate (집행률), per-tenant burn and forecast, idle GPU-hours, and the money that will be unspent
at the period's end at today's burn rate. A region that does not answer is shown as such with the time of its
last good answer (kept in a cache file beside the regions file) and its last known figures, marked stale;
no region is ever silently dropped. No region's control plane holds another region's token.

Forecast (per tenant): burn = the region's ``burn_rate_krw_per_day`` (last 7 KST days) when it reports one,
else the tenant's average since its grant started; spent at the grant's end = min(grant, charged + held +
burn x days left); unspent = grant - that. Per funding source: each tenant's figures split by its grant's
funding shares; unspent at the period's end = budget - forecast spent.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testbed import tables
from testbed.errors import format_validation_errors

KST = dt.timezone(dt.timedelta(hours=9), "KST")  # Asia/Seoul has no DST: a fixed offset is the same zone
SLUG = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"


class ProgramError(ValueError):
    """A regions file or a region's answer is wrong: one line naming the file/region, the field and the value."""


class RegionBudget(BaseModel):
    """``GET /v1/budget``: a region's budget per funding source over its fiscal period (KRW, supply amounts)."""

    region: str
    fiscal_period_start: dt.date
    fiscal_period_end: dt.date
    vat_rate: float
    funding: dict[str, int]

    @classmethod
    def from_stack(cls, stack: Any) -> "RegionBudget":
        budget = stack.budget
        if budget is None:
            raise ProgramError(f"region {stack.region.id!r} has no testbed:budget in its stack file")
        return cls(
            region=stack.region.id,
            fiscal_period_start=budget.fiscal_period.start,
            fiscal_period_end=budget.fiscal_period.end,
            vat_rate=float(budget.vat_rate),
            funding={str(getattr(k, "value", k)): int(v) for k, v in budget.funding.items()},
        )


# -- the regions file -----------------------------------------------------------------------
class RegionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SLUG)
    url: str = Field(pattern=r"^https?://\S+$")
    token_file: Path


class RegionsFile(BaseModel):
    """``regions:`` a list of name, url, token_file (a relative token_file is relative to the regions file)."""

    model_config = ConfigDict(extra="forbid")

    regions: list[RegionEntry] = Field(min_length=1)

    @field_validator("regions")
    @classmethod
    def _unique(cls, regions: list[RegionEntry]) -> list[RegionEntry]:
        names = [r.name for r in regions]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"region {duplicate!r} is listed twice")
        return regions

    @classmethod
    def load(cls, path: str | Path) -> "RegionsFile":
        path = Path(path)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProgramError(f"{path}: no such regions file") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ProgramError(f"{path}: cannot be read as YAML: {exc}".splitlines()[0]) from None
        try:
            regions = cls.model_validate(document if isinstance(document, dict) else {"regions": document})
        except ValidationError as exc:
            raise ProgramError(f"{path}: {format_validation_errors(exc.errors())}") from None
        for entry in regions.regions:
            if not entry.token_file.is_absolute():
                entry.token_file = path.parent / entry.token_file
        return regions

    def cache_file(self, path: str | Path) -> Path:
        path = Path(path)
        return path.with_name(f".{path.stem}.cache.json")


# -- the report -----------------------------------------------------------------------------
class RegionStatus(BaseModel):
    region: str
    status: Literal["ok", "no answer"]
    last_good_at: dt.datetime | None = Field(default=None, description="when the region last answered")
    error: str | None = None
    stale: bool = Field(default=False, description="its figures are those of its last good answer")


class FundingLine(BaseModel):
    """One region's funding source (cost_item None: the source's total, with its budget), or one cost item of it."""

    region: str
    source: str
    cost_item: str | None = None
    budget_krw: int | None = None
    granted_krw: int
    executed_krw: int
    held_krw: int
    execution_rate: float | None = Field(description="executed / budget (a cost item: executed / granted)")
    forecast_executed_krw: int = Field(description="executed by the period's end at today's burn rate")
    unspent_at_end_krw: int = Field(description="budget (cost item: granted) - forecast executed")
    stale: bool = False


class TenantLine(BaseModel):
    region: str
    tenant: str
    name: str | None = None
    cost_item: str | None = None
    grant_krw: int
    charged_krw: int
    held_krw: int
    remaining_krw: int
    execution_rate: float | None
    burn_krw_per_day: float
    forecast_end_krw: int
    unspent_at_end_krw: int
    forecast_exhaustion_date: dt.date | None = None
    idle_gpu_hours: float
    stale: bool = False


class ProgramReport(BaseModel):
    generated_at: dt.datetime
    regions: list[RegionStatus]
    funding: list[FundingLine]
    tenants: list[TenantLine]


def _days(start: dt.date, end: dt.date) -> int:
    """Days of an inclusive range (0 if it is empty)."""
    return max(0, (end - start).days + 1)


def tenant_line(region: str, item: dict[str, Any], today: dt.date, period_end: dt.date, stale: bool) -> TenantLine:
    """One tenant's burn and forecast from its ``/v1/usage`` item."""
    grant = int(item.get("grant_krw") or 0)
    charged = int(item.get("charged_krw") or 0)
    held = int(item.get("held_krw") or 0)
    start = dt.date.fromisoformat(item["grant_start"]) if item.get("grant_start") else today
    end = min(dt.date.fromisoformat(item["grant_end"]) if item.get("grant_end") else period_end, period_end)
    burn = item.get("burn_rate_krw_per_day")
    if burn is None:
        elapsed = _days(start, min(today, end))
        burn = charged / elapsed if elapsed else 0.0
    left = _days(today + dt.timedelta(days=1), end)
    forecast = min(grant, round(charged + held + float(burn) * left)) if grant else charged + held
    exhaustion = item.get("forecast_exhaustion_date")
    if exhaustion is None and burn and grant:
        days_to_empty = max(0.0, grant - charged - held) / float(burn)
        if days_to_empty < left:
            exhaustion = (today + dt.timedelta(days=int(days_to_empty))).isoformat()
    return TenantLine(
        region=region,
        tenant=item["tenant"],
        name=item.get("name"),
        cost_item=item.get("cost_item"),
        grant_krw=grant,
        charged_krw=charged,
        held_krw=held,
        remaining_krw=int(item.get("remaining_krw", max(0, grant - charged - held)) or 0),
        execution_rate=charged / grant if grant else None,
        burn_krw_per_day=float(burn),
        forecast_end_krw=forecast,
        unspent_at_end_krw=max(0, grant - forecast),
        forecast_exhaustion_date=dt.date.fromisoformat(exhaustion) if isinstance(exhaustion, str) else exhaustion,
        idle_gpu_hours=float(item.get("idle_gpu_hours") or 0.0),
        stale=stale,
    )


def _split(amount: int, shares: dict[str, float]) -> dict[str, float]:
    return {source: amount * float(share) for source, share in shares.items()}


def region_lines(
    region: str, budget: dict[str, Any], usage: dict[str, Any], today: dt.date, stale: bool
) -> tuple[list[FundingLine], list[TenantLine]]:
    """A region's funding and tenant lines from its ``/v1/budget`` and ``/v1/usage`` answers."""
    period_end = dt.date.fromisoformat(budget["fiscal_period_end"])
    funding: dict[str, int] = {k: int(v) for k, v in budget["funding"].items()}
    tenants, items = [], {t["tenant"]: t for t in usage["tenants"]}
    # (source, cost item) -> granted, executed, held, forecast
    sums: dict[tuple[str, str], list[float]] = {}
    for item in usage["tenants"]:
        line = tenant_line(region, item, today, period_end, stale)
        tenants.append(line)
        shares = items[line.tenant].get("funding_shares") or {}
        cost_item = line.cost_item or "unspecified"
        for source, share in shares.items():
            row = sums.setdefault((source, cost_item), [0.0, 0.0, 0.0, 0.0])
            for i, amount in enumerate((line.grant_krw, line.charged_krw, line.held_krw, line.forecast_end_krw)):
                row[i] += amount * float(share)
    lines = []
    for source in sorted(set(funding) | {s for s, _ in sums}):
        items_of_source = sorted((c, v) for (s, c), v in sums.items() if s == source)
        total = [sum(v[i] for _, v in items_of_source) for i in range(4)]
        budget_krw = funding.get(source, 0)
        executed = round(total[1])
        lines.append(
            FundingLine(
                region=region,
                source=source,
                budget_krw=budget_krw,
                granted_krw=round(total[0]),
                executed_krw=executed,
                held_krw=round(total[2]),
                execution_rate=executed / budget_krw if budget_krw else None,
                forecast_executed_krw=round(total[3]),
                unspent_at_end_krw=budget_krw - round(total[3]),
                stale=stale,
            )
        )
        for cost_item, v in items_of_source:
            granted, executed = round(v[0]), round(v[1])
            lines.append(
                FundingLine(
                    region=region,
                    source=source,
                    cost_item=cost_item,
                    granted_krw=granted,
                    executed_krw=executed,
                    held_krw=round(v[2]),
                    execution_rate=executed / granted if granted else None,
                    forecast_executed_krw=round(v[3]),
                    unspent_at_end_krw=granted - round(v[3]),
                    stale=stale,
                )
            )
    return lines, tenants


def fetch_region(entry: RegionEntry, timeout: float = 10.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``/v1/budget``, ``/v1/usage``) of one region with its program-office token; raises on any failure."""
    import httpx

    try:
        token = entry.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ProgramError(f"token_file {entry.token_file}: {exc.strerror}") from None
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=entry.url.rstrip("/"), headers=headers, timeout=timeout) as client:
        answers = []
        for path in ("/v1/budget", "/v1/usage"):
            response = client.get(path)
            if response.status_code != 200:
                try:
                    detail = response.json().get("detail")
                except ValueError:
                    detail = response.text[:200]
                raise ProgramError(f"GET {path}: {response.status_code} {detail}")
            answers.append(response.json())
    budget, usage = answers
    if budget.get("region") != entry.name:
        raise ProgramError(
            f"the control plane at {entry.url} serves region {budget.get('region')!r}, not {entry.name!r}"
        )
    return budget, usage


def build_report(regions_path: str | Path, now: dt.datetime | None = None, fetch=fetch_region) -> ProgramReport:
    """Ask every region; fall back to the cache (marked stale) for those that do not answer; refresh the cache."""
    regions = RegionsFile.load(regions_path)
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.astimezone(KST).date()
    cache_path = regions.cache_file(regions_path)
    try:
        cache: dict[str, Any] = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    statuses, funding, tenants = [], [], []
    for entry in regions.regions:
        try:
            budget, usage = fetch(entry)
        except Exception as exc:  # any failure of one region: shown, never dropped, never fatal to the others
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            cached = cache.get(entry.name)
            statuses.append(
                RegionStatus(
                    region=entry.name,
                    status="no answer",
                    error=message,
                    stale=cached is not None,
                    last_good_at=dt.datetime.fromisoformat(cached["at"]) if cached else None,
                )
            )
            if cached:
                lines, people = region_lines(entry.name, cached["budget"], cached["usage"], today, stale=True)
                funding += lines
                tenants += people
            continue
        cache[entry.name] = {"at": now.isoformat(), "budget": budget, "usage": usage}
        statuses.append(RegionStatus(region=entry.name, status="ok", last_good_at=now))
        lines, people = region_lines(entry.name, budget, usage, today, stale=False)
        funding += lines
        tenants += people
    tmp = cache_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(cache_path)
    return ProgramReport(generated_at=now, regions=statuses, funding=funding, tenants=tenants)


# -- rendering ----------------------------------------------------------------------------
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


def _column(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def write_xlsx(report: ProgramReport, path: str | Path) -> None:
    """A minimal Office Open XML workbook, one sheet per table (inline strings; no extra dependency)."""
    sheets = _sheets(report)
    fixed = (1980, 1, 1, 0, 0, 0)  # reproducible bytes

    def sheet_xml(headers: list[str], rows: list[list[Any]]) -> str:
        out = []
        for r, row in enumerate([headers, *rows], start=1):
            cells = "".join(
                f'<c r="{_column(c)}{r}" t="inlineStr"><is><t>{html.escape(str(v))}</t></is></c>'
                for c, v in enumerate(row)
            )
            out.append(f'<row r="{r}">{cells}</row>')
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/'
            f'spreadsheetml/2006/main"><sheetData>{"".join(out)}</sheetData></worksheet>'
        )

    names = list(sheets)
    files = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.'
        'openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.'
        'openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override '
        'PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.'
        'main+xml"/>'
        + "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/vnd.'
            'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, len(names) + 1)
        )
        + "</Types>",
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.'
        'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.'
        'org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.'
        'openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships"><sheets>'
        + "".join(f'<sheet name="{n}" sheetId="{i}" r:id="rId{i}"/>' for i, n in enumerate(names, start=1))
        + "</sheets></workbook>",
        "xl/_rels/workbook.xml.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns='
        '"http://schemas.openxmlformats.org/package/2006/relationships">'
        + "".join(
            f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            f'worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, len(names) + 1)
        )
        + "</Relationships>",
        **{f"xl/worksheets/sheet{i}.xml": sheet_xml(*sheets[n]) for i, n in enumerate(names, start=1)},
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, fixed), text)


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
