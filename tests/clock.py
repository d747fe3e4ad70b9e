"""A clock a test holds: it moves only when the test calls ``advance``."""

from __future__ import annotations

import threading


class ManualClock:
    """``time()`` starts at ``start`` (epoch seconds) and ``monotonic()`` at 1000; both move together."""

    def __init__(self, start: float = 1_800_000_000.0):
        self._lock = threading.Lock()
        self._wall = start
        self._mono = 1000.0

    def time(self) -> float:
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._wall += seconds
            self._mono += seconds
