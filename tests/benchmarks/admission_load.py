"""What the admission benchmarks share: timing ``plane.admit`` inside the control plane, and tenants
submitting concurrently over real HTTP (bench_control_plane.py on SQLite, bench_replicas.py on
two PostgreSQL replicas through timed_replica.py).

The tenants' load runs on the server's own cores, so what the clients spend is taken from the server. Two clients
send it: ``sdk``, the SDK (``TestbedClient``, on httpx), as a tenant's script submits, and ``raw``, the SDK's own
request (method, path, headers and body, built by its httpx client once per tenant) sent again and again on one
``http.client`` connection, its answer validated as the SDK does, for about a third of the CPU: nearer what the
server sustains when its clients are elsewhere, as a region's companies are. Either way the clock starts once every
client is built and connected."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from testbed.client import TestbedClient
from testbed.jobs import Job
from tests.replicas import issued_token

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
    wall_seconds: float = 0.0  # from every client built and connected to the last answer
    setup_seconds: float = 0.0  # building and connecting the clients, before that
    client_cpu_seconds: float = 0.0  # the clients' own (this process's), on the same cores as the server

    @property
    def client_cpu_ms_per_job(self) -> float:
        return self.client_cpu_seconds * 1000 / len(self.roundtrip) if self.roundtrip else 0.0

    @property
    def throughput(self) -> float:
        return len(self.roundtrip) / self.wall_seconds if self.wall_seconds else 0.0


Client = Literal["raw", "sdk"]


class RawSubmitter:
    """The SDK's submit request, built once by its own httpx client, sent on one kept-alive ``http.client``
    connection; each answer validated as a ``Job`` (what ``TestbedClient.submit`` returns)."""

    def __init__(self, url: str, token: str):
        with TestbedClient(url, token) as sdk:
            request = sdk._http.build_request("POST", "/v1/jobs", json={"entrypoint": TRIVIAL, "cpus": 1})
            self.headers = dict(request.headers)
            self.body = request.read()
            self.path = request.url.raw_path.decode()
            self.opening = sdk._http.build_request("GET", "/v1/jobs", params={"limit": 1})
        address = urlsplit(url)
        self.connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)

    def _send(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> bytes:
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{response.status}: {answer[:300]!r}")
        return answer

    def open(self) -> None:
        self._send("GET", self.opening.url.raw_path.decode(), dict(self.opening.headers), None)

    def submit(self) -> None:
        Job.model_validate_json(self._send("POST", self.path, self.headers, self.body))

    def close(self) -> None:
        self.connection.close()


class SdkSubmitter:
    """``TestbedClient.submit``, as a tenant's script calls it."""

    def __init__(self, url: str, token: str):
        self.client = TestbedClient(url, token)

    def open(self) -> None:
        self.client.list_jobs(limit=1)

    def submit(self) -> None:
        self.client.submit(entrypoint=TRIVIAL, cpus=1)

    def close(self) -> None:
        self.client.close()


SUBMITTERS = {"raw": RawSubmitter, "sdk": SdkSubmitter}


def submit_concurrently(
    home: Path, tenants: list[str], urls: list[str], jobs_per_tenant: int, client: Client = "sdk"
) -> LoadResult:
    """Every tenant (its token from ``home/credentials/<tenant>.token``) submits ``jobs_per_tenant`` trivial
    jobs at once through ``client``, tenant i to ``urls[i % len(urls)]``; the client round trips and errors."""
    result = LoadResult()
    lock = threading.Lock()
    started: list[float] = []
    setup_began = time.perf_counter()

    def start() -> None:  # every client is built and connected: the clock and the CPU count start here
        started.extend((time.perf_counter(), time.process_time()))

    barrier = threading.Barrier(len(tenants), action=start)

    def tenant_loop(i: int, tenant: str) -> None:
        token = issued_token(home, tenant)
        submitter = SUBMITTERS[client](urls[i % len(urls)], token)
        try:
            try:
                submitter.open()  # the connection
            except BaseException:
                barrier.abort()  # the others stop waiting: the run fails rather than hangs
                raise
            barrier.wait()
            for _ in range(jobs_per_tenant):
                begin = time.perf_counter()
                try:
                    submitter.submit()
                except Exception as exc:  # counted, reported (a refusal, a dropped connection, a bad answer)
                    result.errors.append(str(exc))
                with lock:
                    result.roundtrip.append(time.perf_counter() - begin)
        finally:
            submitter.close()

    threads = [threading.Thread(target=tenant_loop, args=item) for item in enumerate(tenants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not started:
        raise RuntimeError("the load never started: a client could not connect (its error is above)")
    result.wall_seconds = time.perf_counter() - started[0]
    result.setup_seconds = started[0] - setup_began
    result.client_cpu_seconds = time.process_time() - started[1]
    return result
