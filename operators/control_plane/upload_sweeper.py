"""Removes the uploads a crash or a client gone away left behind: once at start, then periodically."""

from __future__ import annotations

import logging
import threading

from operators.control_plane.tenant_storage import TenantStorage

log = logging.getLogger("testbed.control_plane")


class UploadSweeper:
    """Removes abandoned uploads at start, then every ``idle_seconds / 4`` (at most a minute), all in a thread of its
    own: a slow store (a remote bucket's listing) never holds up the control plane's start."""

    def __init__(self, storage: TenantStorage, idle_seconds: float):
        self.storage, self.idle_seconds = storage, idle_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upload-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        self._sweep()
        while not self._stop.wait(min(self.idle_seconds / 4, 60.0)):
            self._sweep()

    def _sweep(self) -> None:
        try:
            self.storage.sweep_uploads(self.idle_seconds)
        except Exception as exc:  # the store does not answer, or refuses (no credentials yet): the next sweep tries
            log.warning("sweep of abandoned uploads failed: %s", exc)
