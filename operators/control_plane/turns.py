"""Threads shared by turns: each key's work runs in the order it came, one at a time, and the keys take turns.

Admissions of one tenant run one at a time anyway (in its section), so a company submitting a sweep at once would
otherwise hold every admission thread waiting on its own lock (or behind its own dispatch calling a slow backend)
while every other company's submissions waited behind it. Here a company holds at most one thread, and its next
admission goes to the back of the line, after the other companies' waiting ones.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

log = logging.getLogger(__name__)

Work = Callable[[], None]


class TurnsByKey:
    """A thread pool whose work is submitted under a key (a tenant): at most one work of a key runs at a time."""

    def __init__(self, threads: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._guard = threading.Lock()
        self._waiting: dict[str, deque[Work]] = {}  # the keys with work running, and their work still to run

    def submit(self, key: str, work: Work) -> None:
        """Run ``work`` after the key's work submitted before it; ``work`` reports its own outcome (it should not raise)."""
        with self._guard:  # held until the pool takes it, so no work queues behind a first work being refused
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.append(work)
                return
            self._waiting[key] = deque()
            try:
                self._pool.submit(self._run, key, work)
            except RuntimeError:  # shut down: nothing of the key runs, and it is not left busy
                del self._waiting[key]
                raise

    def _run(self, key: str, work: Work) -> None:
        while True:
            try:
                work()
            except BaseException:  # whatever it was, the key's next work still runs (or the key stayed busy forever)
                log.exception("work for %s failed", key)
            with self._guard:
                waiting = self._waiting[key]
                if not waiting:
                    del self._waiting[key]
                    return
                work = waiting.popleft()
            try:
                self._pool.submit(self._run, key, work)  # to the back of the line: the other keys' turn first
                return
            except RuntimeError:  # shutting down: this thread runs the rest of the key's work
                continue

    def shutdown(self) -> None:
        """Wait for all the work submitted (none is taken after)."""
        self._pool.shutdown(wait=True)
