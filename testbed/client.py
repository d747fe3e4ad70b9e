"""Python SDK for the control plane, shaped like Ray's JobSubmissionClient.

    client = TestbedClient("http://127.0.0.1:8000", token="tbt_...")
    job = client.submit(template="smoke", params={"epochs": 3})
    client.wait(job["id"]); print(client.logs(job["id"]))
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from testbed.jobs import TERMINAL_STATUSES, JobStatus

ENV_URL = "TESTBED_URL"
ENV_TOKEN = "TESTBED_TOKEN"


class TestbedError(RuntimeError):
    """A failed call, as one readable line (HTTP status and the server's reason)."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


def testbed_home() -> Path:
    """The local state folder: ``$TESTBED_HOME`` or ``~/.testbed``."""
    return Path(os.environ.get("TESTBED_HOME") or Path.home() / ".testbed").expanduser().absolute()


def local_control_plane_url(home: Path | None = None) -> str | None:
    """The control plane URL recorded by ``testbed up`` in the state folder, if any."""
    state = (home or testbed_home()) / "state.json"
    try:
        return json.loads(state.read_text()).get("client_url")
    except (OSError, ValueError):
        return None


class TestbedClient:
    """submit, get_job, list_jobs, logs, stop, wait — against one control plane."""

    __test__ = False

    def __init__(self, url: str, token: str | None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> "TestbedClient":
        """URL from the argument, ``$TESTBED_URL`` or the local state; token likewise or ``$TESTBED_TOKEN``."""
        url = url or os.environ.get(ENV_URL) or local_control_plane_url()
        if not url:
            raise TestbedError(f"no control plane address: set {ENV_URL}, pass --url, or start one with `testbed up`")
        token = token or os.environ.get(ENV_TOKEN)
        if not token:
            raise TestbedError(
                f"no token: set {ENV_TOKEN} or pass --token (the local operator prints one with `testbed tenants token ID`)"
            )
        return cls(url, token)

    @classmethod
    def from_args(cls, args: Any) -> "TestbedClient":
        return cls.from_env(getattr(args, "url", None), getattr(args, "token", None))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "TestbedClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- raw calls ------------------------------------------------------------------------
    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TestbedError(f"cannot reach the control plane at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("detail", body) if isinstance(body, dict) else body
            except ValueError:
                detail = response.text.strip() or response.reason_phrase
            raise TestbedError(f"{response.status_code} {response.reason_phrase}: {detail}", response.status_code)
        return response.json()

    def get_json(self, path: str, **params: Any) -> Any:
        return self.request_json("GET", path, params={k: v for k, v in params.items() if v is not None})

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Submit a job spec (a dict or keyword fields); returns the job object with its ``id``."""
        body = {**(spec or {}), **fields}
        return self.request_json("POST", "/v1/jobs", json=body)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self.request_json("GET", f"/v1/jobs/{job_id}")

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(self.get_job(job_id)["status"])

    def list_jobs(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return self.get_json("/v1/jobs", status=status, limit=limit)["jobs"]

    def logs(self, job_id: str) -> str:
        return self.request_json("GET", f"/v1/jobs/{job_id}/logs")["logs"]

    def stop(self, job_id: str) -> dict[str, Any]:
        return self.request_json("POST", f"/v1/jobs/{job_id}/stop")

    def templates(self) -> list[dict[str, Any]]:
        return self.get_json("/v1/templates")["templates"]

    def wait(
        self,
        job_id: str,
        timeout: float = 600.0,
        poll: float = 0.2,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends; ``on_update`` sees the job after every poll. Raises on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_update is not None:
                on_update(job)
            if JobStatus(job["status"]) in TERMINAL_STATUSES:
                return job
            if time.monotonic() > deadline:
                raise TestbedError(f"job {job_id} still {job['status']} after {timeout:g}s")
            time.sleep(poll)

    def health(self) -> dict[str, Any]:
        return self.get_json("/healthz")
