"""What a job costs: its shape (what its pods occupy, for how long at most), its hold, and its seconds split at
price changes."""

from __future__ import annotations

import math
from dataclasses import dataclass


from operators.control_plane.db.models import JobRow
from testbed.config import Price, StackConfig
from testbed.money import Meter


@dataclass(frozen=True)
class Piece:
    """Whole seconds ``[start, end)`` of a job's run (counted from its start) all at one price."""

    price: Price
    start: int
    end: int


def price_pieces(stack: StackConfig, pool: str, started_at: float, start: int, end: int) -> list[Piece]:
    """Split a job's seconds ``[start, end)`` where a new price row of ``pool`` comes into force.

    Second ``k`` of a job is ``[started_at + k, started_at + k + 1)`` and is priced at the row in force
    at its beginning. Raises KeyError when no row is in force.
    """
    rows = stack.price_rows(pool)
    pieces = []
    k = start
    while k < end:
        price = stack.price_for(pool, started_at + k)
        later = [r for r in rows if r.effective_ts > started_at + k]
        stop = end if not later else min(end, max(k + 1, math.ceil(later[0].effective_ts - started_at)))
        pieces.append(Piece(price, k, stop))
        k = stop
    return pieces


PRICED_KEY = "priced"  # a job record's spec key: the resources its pods request in all, what holds and charges price


@dataclass(frozen=True)
class JobShape:
    """What a job occupies per second, and for how long at most."""

    cpus: float
    gpus: int
    memory_bytes: int
    max_runtime_seconds: int

    @classmethod
    def of(cls, row: JobRow) -> "JobShape":
        """The shape admission priced the job's hold by (its pods in all, ``spec[PRICED_KEY]``); else its spec."""
        spec = row.spec or {}
        priced = spec.get(PRICED_KEY) or {}
        return cls(
            float(priced.get("cpus", row.cpus)),
            int(priced.get("gpus", row.gpus)),
            int(priced.get("memory_bytes", row.memory_bytes)),
            int(spec.get("max_runtime_seconds") or 0),
        )

    def priced(self) -> dict[str, float | int]:
        """What is priced per second, as the job record keeps it (``spec[PRICED_KEY]``)."""
        return {"cpus": self.cpus, "gpus": self.gpus, "memory_bytes": self.memory_bytes}

    def meter(self, seconds: int) -> Meter:
        return Meter.of(self.cpus, self.gpus, self.memory_bytes, seconds)


@dataclass(frozen=True)
class Hold:
    """A job's maximum cost at admission (and its GPU-seconds), priced from now."""

    krw: int
    gpu_seconds: int
    pool: str
    price_id: str
    priced: bool  # False: the pool has no price in force (money is off for this tenant)
