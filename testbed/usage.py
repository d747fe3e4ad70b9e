"""Usage reports: the models ``GET /v1/usage`` returns, and their table, settlement CSV and burn-down plot.

Allocated use only: what each job *requested*, from its start to its end (or to the last time the
control plane saw it running). Observed utilisation is a separate Prometheus metric, not a report.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from testbed import tables
from testbed.jobs import JobStatus

STATUSES = [s.value for s in JobStatus]


class BurnPoint(BaseModel):
    """Cumulative allocated GPU-seconds of a tenant at a moment (epoch seconds)."""

    timestamp: float
    gpu_seconds: float


class TenantUsage(BaseModel):
    """One tenant's metered, allocated use and where it stands against its grant."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    name: str | None = None
    industry: str | None = None
    region: str
    cpu_seconds: float = 0.0
    memory_byte_seconds: float = 0.0
    gpu_seconds_by_model: dict[str, float] = Field(default_factory=dict)
    jobs: dict[str, int] = Field(default_factory=dict, description="job count by status")
    grant_gpu_seconds: float | None = None
    grant_start: dt.date | None = None
    grant_end: dt.date | None = None
    burn: list[BurnPoint] | None = Field(default=None, description="only with ?series=true")
    idle_gpu_seconds: float = Field(default=0.0, description="GPU-seconds the tenant's jobs held idle (DCGM)")
    # Money, from the money ledger (whole won, excluding VAT); see docs/money.md.
    grant_krw: int | None = Field(default=None, description="the grant in won (None: GPU-hours only)")
    charged_krw: int = 0
    held_krw: int = Field(default=0, description="what running and queued jobs still hold of their holds")
    remaining_krw: int | None = Field(default=None, description="grant - charged - held, never below 0")
    overspend_krw: int = Field(default=0, description="charged + held beyond the grant (warn mode only)")
    charged_gpu_hours: float = 0.0
    enforcement: str | None = None
    cost_item: str | None = None
    funding_shares: dict[str, float] | None = None
    # Burn-down in won (h18): the last 7 Asia/Seoul days' rate and when the grant runs out at it.
    burn_rate_krw_per_day: float | None = Field(default=None, description="won charged per day, last 7 KST days")
    forecast_exhaustion_date: dt.date | None = Field(
        default=None, description="KST day the grant runs out at that rate (None: nothing burns)"
    )
    used_ratio: float | None = Field(default=None, description="charged / grant in won (1 = all of it)")
    grant_notice: str | None = Field(default=None, description="said to the company at 80% and 100% of its grant")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gpu_seconds(self) -> float:
        return sum(self.gpu_seconds_by_model.values())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def idle_gpu_hours(self) -> float:
        return self.idle_gpu_seconds / 3600.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cpu_hours(self) -> float:
        return self.cpu_seconds / 3600.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def grant_gpu_hours(self) -> float | None:
        return None if self.grant_gpu_seconds is None else self.grant_gpu_seconds / 3600.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def grant_used_ratio(self) -> float | None:
        """Share of the grant used (1.0 = all of it; above 1.0 = overspent)."""
        if not self.grant_gpu_seconds:
            return None
        return self.gpu_seconds / self.grant_gpu_seconds

    @computed_field  # type: ignore[prop-decorator]
    @property
    def jobs_total(self) -> int:
        return sum(self.jobs.values())


class UsageReport(BaseModel):
    """Usage of every tenant the caller may see, in one region, at one moment."""

    region: str
    generated_at: dt.datetime
    tenants: list[TenantUsage]


# -- rendering ----------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".2f") -> str | None:
    return None if value is None else format(value, spec)


def _hours(value: float) -> str:
    """Hours with two significant digits below 1 (a 30-second job is 0.0083, not 0.00), else two decimals."""
    if value <= 0 or value >= 1:
        return f"{value:.2f}"
    return f"{value:.{max(2, 1 - math.floor(math.log10(value)))}f}"


USAGE_HEADERS = [
    "TENANT",
    "GPU-HOURS",
    "CPU-HOURS",
    "GRANT-H",
    "USED",
    "GRANT-KRW",
    "CHARGED-KRW",
    "HELD-KRW",
    "REMAINING-KRW",
    "KRW/DAY",
    "RUNS-OUT",
    *STATUSES,
]


def _won(value: int | None) -> str | None:
    return None if value is None else f"{value:,}"


def grant_line(t: TenantUsage) -> str:
    """One company's grant in a sentence (the demo prints it)."""
    if t.grant_krw is None:
        return f"{t.tenant}: no grant in won; {t.gpu_hours:.4f} GPU-hours used"
    over = f", overspent {t.overspend_krw:,} KRW" if t.overspend_krw else ""
    return (
        f"{t.tenant}: grant {t.grant_krw:,} KRW, charged {t.charged_krw:,}, held {t.held_krw:,}, "
        f"remaining {(t.remaining_krw or 0):,} KRW{over} ({t.enforcement}, {t.cost_item}); "
        f"{t.charged_gpu_hours:.4f} of {_fmt(t.grant_gpu_hours, '.0f') or '-'} GPU-hours charged"
    )


def render_table(report: UsageReport) -> str:
    """The report's moment, then one line per tenant (numbers aligned right)."""
    rows = [
        [
            t.tenant,
            _hours(t.gpu_hours),
            _hours(t.cpu_hours),
            _fmt(t.grant_gpu_hours, ".0f"),
            _fmt(t.grant_used_ratio, ".1%"),
            _won(t.grant_krw),
            _won(t.charged_krw),
            _won(t.held_krw),
            _won(t.remaining_krw),
            _fmt(t.burn_rate_krw_per_day, ",.0f"),
            t.forecast_exhaustion_date.isoformat() if t.forecast_exhaustion_date else None,
            *(t.jobs.get(s, 0) for s in STATUSES),
        ]
        for t in report.tenants
    ]
    table = tables.render_table(USAGE_HEADERS, rows, right=range(1, len(USAGE_HEADERS)))
    notices = [f"! {t.tenant}: {t.grant_notice}" for t in report.tenants if t.grant_notice]
    return "\n".join(
        [f"region {report.region}, usage at {report.generated_at.isoformat(timespec='seconds')}", table, *notices]
    )


CSV_COLUMNS = [
    "region",
    "tenant",
    "name",
    "industry",
    "grant_start",
    "grant_end",
    "grant_gpu_hours",
    "gpu_hours",
    "gpu_hours_by_model",
    "cpu_hours",
    "memory_gib_hours",
    "grant_used_ratio",
    "jobs_total",
    *(f"jobs_{s.lower()}" for s in STATUSES),
    "grant_krw",
    "charged_krw",
    "held_krw",
    "remaining_krw",
    "overspend_krw",
    "generated_at",
]


def csv_rows(report: UsageReport) -> list[dict[str, Any]]:
    """One settlement row per tenant (hours, not seconds; ratio 0-1)."""
    rows = []
    for t in report.tenants:
        rows.append(
            {
                "region": t.region,
                "tenant": t.tenant,
                "name": t.name or "",
                "industry": t.industry or "",
                "grant_start": t.grant_start.isoformat() if t.grant_start else "",
                "grant_end": t.grant_end.isoformat() if t.grant_end else "",
                "grant_gpu_hours": "" if t.grant_gpu_hours is None else f"{t.grant_gpu_hours:.6f}",
                "gpu_hours": f"{t.gpu_hours:.6f}",
                "gpu_hours_by_model": ";".join(
                    f"{m}={s / 3600:.6f}" for m, s in sorted(t.gpu_seconds_by_model.items())
                ),
                "cpu_hours": f"{t.cpu_hours:.6f}",
                "memory_gib_hours": f"{t.memory_byte_seconds / 2**30 / 3600:.6f}",
                "grant_used_ratio": "" if t.grant_used_ratio is None else f"{t.grant_used_ratio:.6f}",
                "jobs_total": t.jobs_total,
                **{f"jobs_{s.lower()}": t.jobs.get(s, 0) for s in STATUSES},
                "grant_krw": "" if t.grant_krw is None else t.grant_krw,
                "charged_krw": t.charged_krw,
                "held_krw": t.held_krw,
                "remaining_krw": "" if t.remaining_krw is None else t.remaining_krw,
                "overspend_krw": t.overspend_krw,
                "generated_at": report.generated_at.isoformat(),
            }
        )
    return rows


def write_csv(report: UsageReport, path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(report))


def plot_burndown(report: UsageReport, path: str | Path) -> None:
    """Each tenant's remaining grant (GPU-hours) over time against the straight-line plan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tenants = [t for t in report.tenants if t.grant_gpu_seconds]
    columns = min(3, max(1, len(tenants)))
    rows = max(1, -(-len(tenants) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.4 * rows), squeeze=False)
    now = report.generated_at.timestamp()
    for ax, t in zip(axes.flat, tenants):
        grant_h = t.grant_gpu_seconds / 3600.0  # type: ignore[operator]
        start = dt.datetime.combine(t.grant_start, dt.time(), tzinfo=dt.timezone.utc) if t.grant_start else None
        end = (
            dt.datetime.combine(t.grant_end, dt.time(), tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
            if t.grant_end
            else None
        )
        if start and end:
            ax.plot([start, end], [grant_h, 0.0], linestyle="--", color="grey", label="plan")
        points = t.burn or [BurnPoint(timestamp=now, gpu_seconds=t.gpu_seconds)]
        if start:
            points = [BurnPoint(timestamp=start.timestamp(), gpu_seconds=0.0), *points]
        xs = [dt.datetime.fromtimestamp(p.timestamp, dt.timezone.utc) for p in points]
        ax.plot(xs, [grant_h - p.gpu_seconds / 3600.0 for p in points], color="tab:blue", label="remaining")
        ax.set_title(f"{t.tenant} ({(t.grant_used_ratio or 0):.1%} used)", fontsize=9)
        ax.set_ylabel("GPU-hours left")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tenants) :]:
        ax.axis("off")
    fig.suptitle(f"Grant burn-down, region {report.region}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
