"""Idle GPUs found and, by a tenant's policy, ended.

Prometheus joins the DCGM exporter's utilisation of each GPU to the job holding it (recording rule
``job:testbed_job_gpu_utilization:max_ratio``: the busiest of the job's GPUs, 0-1; see the group
``testbed.gpu.idle`` of operators/metering/rules.yaml). Every ``idle_check_seconds`` the replica holding
the reconciler lease asks Prometheus, over its HTTP API, for each job's highest utilisation over the
last ``idle_flag_minutes``:

- a running GPU job that has run that long with every GPU under ``idle_threshold_ratio`` the whole time
  is flagged: ``idle_since`` (the start of that stretch) is set and its GPUs count as idle from then on
  (``idle_gpu_seconds``, shown as ``idle_gpu_hours`` on the job and in the tenant's usage);
- a flagged job whose GPUs work again is unflagged (the idle hours it held stay counted);
- a flagged job of a tenant whose stack entry sets ``idle_stop_minutes`` is stopped once it has been idle
  that long, and its final message says so.

Jobs Prometheus knows nothing about (no utilisation series) are left alone: no data is not idleness.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

import httpx
from pydantic import BaseModel

from operators.control_plane.dispatch import Dispatcher
from operators.control_plane.db.models import JobRow
from operators.control_plane.db.store import Store
from testbed.config import Tenant
from testbed.jobs import JobStatus
from testbed.settings import ControlPlaneSettings

log = logging.getLogger(__name__)
UTILIZATION_RULE = "job:testbed_job_gpu_utilization:max_ratio"


class IdleRound(BaseModel):
    """What one check did: jobs flagged, unflagged and stopped (ids)."""

    flagged: list[str] = []
    unflagged: list[str] = []
    stopped: list[str] = []


class PrometheusError(RuntimeError):
    pass


def busiest_gpu_over(prometheus_url: str, window_seconds: float, timeout: float = 5.0) -> dict[str, float]:
    """Job id -> the highest utilisation (0-1) of any of its GPUs over the last ``window_seconds``."""
    query = f"max by (job_id) (max_over_time({UTILIZATION_RULE}[{max(1, round(window_seconds))}s]))"
    try:
        response = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PrometheusError(f"Prometheus at {prometheus_url} did not answer: {exc}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus at {prometheus_url} refused the query: {body.get('error')}")
    return {
        item["metric"]["job_id"]: float(item["value"][1])
        for item in body["data"]["result"]
        if item["metric"].get("job_id")
    }


def idle_message(threshold: float, minutes: float) -> str:
    return (
        f"stopped: its GPUs stayed under {threshold:.0%} utilisation for {minutes:g} minutes "
        f"(the tenant's idle_stop_minutes policy)"
    )


class IdleWatch:
    """Flags idle GPU jobs, counts their idle GPU-hours and stops them where the tenant's policy says so."""

    def __init__(
        self,
        settings: ControlPlaneSettings,
        tenants: Mapping[str, Tenant],
        store: Store,
        dispatcher: Dispatcher,
        utilisation: Callable[[float], dict[str, float]] | None = None,
    ):
        self.settings = settings
        self.tenants = tenants
        self.store = store
        self.dispatcher = dispatcher
        url = settings.prometheus_url
        self.utilisation = utilisation or ((lambda window: busiest_gpu_over(url, window)) if url else None)  # type: ignore[arg-type]
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.utilisation is not None

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="idle-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.wait(self.settings.idle_check_seconds):
            if not self.dispatcher.lease.holding:
                continue  # one replica watches: the reconciler
            try:
                self.check()
            except PrometheusError as exc:
                log.warning("idle GPU check skipped: %s", exc)
            except Exception:  # keep watching; a bad round must not end the thread
                log.exception("idle GPU check failed")

    def check(self, now: float | None = None) -> IdleRound:
        """One round over the running GPU jobs."""
        assert self.utilisation is not None
        now = time.time() if now is None else now
        window = self.settings.idle_flag_minutes * 60.0
        threshold = self.settings.idle_threshold_ratio
        running = [row for row in self.store.list_jobs(status=JobStatus.RUNNING) if row.gpus > 0]
        if not running:
            return IdleRound()
        busiest = self.utilisation(window)
        result = IdleRound()
        for row in running:
            peak = busiest.get(row.id)
            ran_long_enough = row.started_at is not None and row.started_at <= now - window
            if peak is not None and peak < threshold and ran_long_enough:
                self._count_idle(row, now, window, result)
            elif row.idle_since is not None:
                self.store.update_job(row.id, idle_since=None, idle_checked_at=None)
                result.unflagged.append(row.id)
        return result

    def _count_idle(self, row: JobRow, now: float, window: float, result: IdleRound) -> None:
        if row.idle_since is None:
            since = max(row.started_at or now, now - window)
            counted_from = since
            result.flagged.append(row.id)
        else:
            since = row.idle_since
            counted_from = row.idle_checked_at or row.idle_since
        idle_gpu_seconds = (row.idle_gpu_seconds or 0.0) + row.gpus * max(0.0, now - counted_from)
        row = (
            self.store.update_job(row.id, idle_since=since, idle_checked_at=now, idle_gpu_seconds=idle_gpu_seconds)
            or row
        )
        tenant = self.tenants.get(row.tenant)
        limit = tenant.idle_stop_minutes if tenant is not None else None
        if limit is not None and not row.terminal and now - since >= limit * 60.0:
            minutes = (now - since) / 60.0
            self.dispatcher.stop(row, reason=idle_message(self.settings.idle_threshold_ratio, round(minutes, 1)))
            result.stopped.append(row.id)
