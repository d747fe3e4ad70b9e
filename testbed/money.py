"""Money: the enums, Asia/Seoul calendar helpers, the one rounding rule and the ledger's pydantic models.

Grants are consumed by the supply amount (공급가액, excluding VAT) in whole won. Meters are integer
resource-seconds (CPU milli-seconds, GPU-seconds, MiB-seconds); a price is KRW per hour. The exact
cost of a meter is a :class:`~fractions.Fraction`; money becomes whole won only by
:func:`round_half_up` of a *cumulative* exact cost: each charge of a job is
``round_half_up(exact cost of everything metered so far) - what was already charged``, so the sum of a
job's charges is always the rounded exact total (see docs/money.md).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

KST = ZoneInfo("Asia/Seoul")
SECONDS_PER_HOUR = 3600
MIB = 2**20
MIB_PER_GIB = 1024


class FundingSource(str, enum.Enum):
    """Who pays: the ministry (national), the province (local), the company itself (self)."""

    NATIONAL = "national"
    LOCAL = "local"
    SELF = "self"


class CostItem(str, enum.Enum):
    """The settlement's cost item a grant is booked under."""

    DEVELOPMENT = "development"
    DEMONSTRATION = "demonstration"
    DISSEMINATION = "dissemination"


class Enforcement(str, enum.Enum):
    """What a grant's limit does: refuse what does not fit, stop running work, or only record."""

    ADMIT_IF_FITS = "admit-if-fits"
    STOP = "stop"
    WARN = "warn"


class LedgerKind(str, enum.Enum):
    """Kinds of money-ledger entries (amounts positive except adjustments)."""

    OPENING = "opening"
    HOLD = "hold"
    CHARGE = "charge"
    RELEASE = "release"
    ADJUSTMENT = "adjustment"


# -- Asia/Seoul days ------------------------------------------------------------------------
def kst_date(ts: float) -> dt.date:
    """The Asia/Seoul calendar day of an epoch timestamp."""
    return dt.datetime.fromtimestamp(ts, KST).date()


def kst_month(ts: float) -> str:
    """``YYYY-MM`` of an epoch timestamp in Asia/Seoul."""
    return kst_date(ts).strftime("%Y-%m")


def day_start_ts(day: dt.date) -> float:
    """Epoch seconds of 00:00 Asia/Seoul on ``day``."""
    return dt.datetime.combine(day, dt.time(), tzinfo=KST).timestamp()


def day_end_ts(day: dt.date) -> float:
    """Epoch seconds of the end of ``day`` in Asia/Seoul (00:00 of the next day): inclusive end dates."""
    return day_start_ts(day + dt.timedelta(days=1))


# -- rounding -------------------------------------------------------------------------------
def round_half_up(value: Fraction | Decimal | int) -> int:
    """Whole won, halves away from zero (2.5 -> 3, -2.5 -> -3): the only rounding money ever gets."""
    if isinstance(value, Decimal):
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    value = Fraction(value)
    sign = -1 if value < 0 else 1
    return sign * math.floor(abs(value) + Fraction(1, 2))


# -- meters and cost ------------------------------------------------------------------------
class Meter(BaseModel):
    """Integer resource-seconds: what a ledger entry covers."""

    model_config = ConfigDict(frozen=True)

    cpu_milli_seconds: int = 0
    gpu_seconds: int = 0
    memory_mib_seconds: int = 0

    @classmethod
    def of(cls, cpus: float, gpus: int, memory_bytes: int, seconds: int) -> "Meter":
        """A job's spec held for ``seconds`` whole seconds (CPUs in milli-CPUs, memory in whole MiB, rounded up)."""
        return cls(
            cpu_milli_seconds=round(cpus * 1000) * seconds,
            gpu_seconds=gpus * seconds,
            memory_mib_seconds=-(-memory_bytes // MIB) * seconds,
        )

    def __add__(self, other: "Meter") -> "Meter":
        return Meter(
            cpu_milli_seconds=self.cpu_milli_seconds + other.cpu_milli_seconds,
            gpu_seconds=self.gpu_seconds + other.gpu_seconds,
            memory_mib_seconds=self.memory_mib_seconds + other.memory_mib_seconds,
        )


class Rates(BaseModel):
    """KRW per hour (excluding VAT): the three numbers of a price row."""

    model_config = ConfigDict(frozen=True)

    gpu_hour_krw: int
    cpu_hour_krw: int
    gib_hour_krw: int


def exact_cost(meter: Meter, rates: Rates) -> Fraction:
    """The exact cost in won of a meter at a price (no rounding)."""
    return (
        Fraction(meter.gpu_seconds * rates.gpu_hour_krw, SECONDS_PER_HOUR)
        + Fraction(meter.cpu_milli_seconds * rates.cpu_hour_krw, 1000 * SECONDS_PER_HOUR)
        + Fraction(meter.memory_mib_seconds * rates.gib_hour_krw, MIB_PER_GIB * SECONDS_PER_HOUR)
    )


# -- durations --------------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int) -> int:
    """``90s``, ``30m``, ``2h``, ``1d`` or plain seconds -> whole seconds (ValueError naming the text)."""
    if isinstance(text, int):
        return text
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: a positive whole number with s, m, h or d (e.g. 90s, 30m, 2h)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact form: ``2h``, ``90m``, ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def won(amount: int) -> str:
    """``1,234,567 KRW``."""
    return f"{amount:,} KRW"


# -- the ledger's rows, as the read API returns them -----------------------------------------
class LedgerEntry(BaseModel):
    """One row of the append-only money ledger (``money_ledger``)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    at: float
    tenant: str
    job_id: str | None = None
    kind: LedgerKind
    amount_krw: int
    pool: str | None = None
    price_id: str | None = None
    seconds: int = Field(default=0, description="charge: the whole seconds of the job's run it covers")
    cpu_milli_seconds: int = 0
    gpu_seconds: int = 0
    memory_mib_seconds: int = 0
    note: str = ""
    actor: str | None = None


class Quote(BaseModel):
    """What admitting a job now would hold (``POST /v1/jobs/quote``); nothing is recorded."""

    model_config = ConfigDict(frozen=True)

    hold_krw: int = Field(description="won held at admission: max run time x resources x the price")
    max_runtime_seconds: int
    price_id: str = Field(description="'<pool>@<effective_from>' of the price in force now ('' when unpriced)")
    pool: str
    balance_krw: int | None = Field(description="grant - charged - held now (None: the grant has no won)")
    fits: bool
    refusal: str | None = Field(default=None, description="the error code admission would answer")
    reason: str = Field(default="", description="why it does not fit, with the numbers")

    def refuse(self, code: str, reason: str) -> "Quote":
        return self.model_copy(update={"fits": False, "refusal": code, "reason": reason})


class TenantBalance(BaseModel):
    """Where one tenant stands against its grant at a moment, from the ledger alone."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    grant_krw: int | None = None
    charged_krw: int = 0
    held_krw: int = 0
    remaining_krw: int | None = Field(default=None, description="grant - charged - held, never below 0")
    overspend_krw: int = Field(default=0, description="charged + held beyond the grant (warn mode only)")
    grant_gpu_hours: float | None = None
    charged_gpu_hours: float = 0.0
    enforcement: Enforcement = Enforcement.ADMIT_IF_FITS
