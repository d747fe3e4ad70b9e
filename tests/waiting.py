"""The one poll loop of the tests: wait for an event that another process or thread makes happen.

In-process time (leases, sync rounds, retry pauses) is not waited for: tests hold it with
tests/clock.py's ``ManualClock`` and drive ``sync_once()``. ``wait_until`` is for what a real
process does on its own schedule (a server becoming ready, a Ray job starting).
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(done: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll until ``done()`` returns something truthy and return it; past ``timeout`` seconds raise
    ``TimeoutError`` naming ``what``. An exception from ``done`` propagates (a dead process fails fast)."""
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
