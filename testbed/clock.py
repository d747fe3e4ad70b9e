"""The clock that drives time-dependent behaviour (leases, the sync loop, retry pauses, metering).

Code that acts on time takes a ``Clock`` (default ``SYSTEM_CLOCK``) instead of calling ``time``
directly, so a test holds time still and moves it on purpose (tests/clock.py's ``ManualClock``).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds since the epoch (stored, compared across replicas) and a monotonic reading."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The process's real clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()
