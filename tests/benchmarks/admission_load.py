"""What the admission benchmarks share: timing ``plane.admit`` inside the control plane, and tenants
submitting concurrently over real HTTP (bench_control_plane.py on SQLite, bench_replicas.py on
two PostgreSQL replicas through timed_replica.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.client import TestbedClient

TRIVIAL = "python -c 'pass'"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def time_admissions(plane: Any) -> list[float]:
    """Wrap ``plane.admit_with_balance`` (what ``POST /v1/jobs`` and ``plane.admit`` call: the checks, the tenant's
    lock, the persisted record); the samples, in seconds."""
    samples: list[float] = []
    admit = plane.admit_with_balance

    def timed_admit(principal, spec):
        start = time.perf_counter()
        try:
            return admit(principal, spec)
        finally:
            samples.append(time.perf_counter() - start)

    plane.admit_with_balance = timed_admit
    return samples


@dataclass
class LoadResult:
    roundtrip: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    client_cpu_seconds: float = 0.0  # the clients' own (this process's), on the same cores as the server

    @property
    def client_cpu_ms_per_job(self) -> float:
        return self.client_cpu_seconds * 1000 / len(self.roundtrip) if self.roundtrip else 0.0

    @property
    def throughput(self) -> float:
        return len(self.roundtrip) / self.wall_seconds if self.wall_seconds else 0.0


def submit_concurrently(credentials: Path, tenants: list[str], urls: list[str], jobs_per_tenant: int) -> LoadResult:
    """Every tenant (its token from ``credentials/<tenant>.token``) submits ``jobs_per_tenant`` trivial
    jobs at once, tenant i to ``urls[i % len(urls)]``; the client round trips and errors."""
    result = LoadResult()
    lock = threading.Lock()
    barrier = threading.Barrier(len(tenants))

    def tenant_loop(i: int, tenant: str) -> None:
        token = (credentials / f"{tenant}.token").read_text().strip()
        with TestbedClient(urls[i % len(urls)], token) as client:
            client.list_jobs(limit=1)  # open the connection
            barrier.wait()
            for _ in range(jobs_per_tenant):
                start = time.perf_counter()
                try:
                    client.submit(entrypoint=TRIVIAL, cpus=1)
                except Exception as exc:  # counted, reported
                    result.errors.append(str(exc))
                with lock:
                    result.roundtrip.append(time.perf_counter() - start)

    threads = [threading.Thread(target=tenant_loop, args=item) for item in enumerate(tenants)]
    started, cpu_before = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_seconds = time.perf_counter() - started
    result.client_cpu_seconds = time.process_time() - cpu_before
    return result
