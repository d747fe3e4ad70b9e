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

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testbed.errors import format_validation_errors
from testbed.money import KST

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

    from testbed.tls import tls_context

    try:
        token = entry.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ProgramError(f"token_file {entry.token_file}: {exc.strerror}") from None
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=entry.url.rstrip("/"), headers=headers, timeout=timeout, verify=tls_context()) as client:
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
