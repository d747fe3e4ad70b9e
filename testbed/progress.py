"""Progress for long waits, on stderr so stdout stays clean for scripts."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testbed.jobs import Job

HEARTBEAT_SECONDS = 10.0


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


class JobProgress:
    """Prints a job's status changes with elapsed time, and a heartbeat while nothing changes."""

    def __init__(self, label: str, enabled: bool = True):
        self.label = label
        self.enabled = enabled
        self.started = time.monotonic()
        self.last_status: str | None = None
        self.last_print = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, job: Job) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        elapsed = now - self.started
        status = job.status.value
        if status != self.last_status:
            self._line(f"{self.label}: {status} ({elapsed:.1f}s)")
            self.last_status = status
            self.last_print = now
        elif now - self.last_print >= (1.0 if self.tty else HEARTBEAT_SECONDS):
            if self.tty:
                print(f"\r  .. {self.label}: {status} ({elapsed:.0f}s)", end="", file=sys.stderr, flush=True)
            else:
                self._line(f"{self.label}: still {status} ({elapsed:.0f}s)")
            self.last_print = now

    def _line(self, text: str) -> None:
        prefix = "\r" if self.tty else ""
        print(f"{prefix}  .. {text}", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and self.tty:
            print("", file=sys.stderr, flush=True)
