"""A real Prometheus for tests: 127.0.0.1 only, temp storage, own process group, killed at exit."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import yaml

from testbed.net import free_port

RULES_FILE = Path(__file__).resolve().parents[2] / "operators" / "metering" / "rules.yaml"


class PrometheusServer:
    """Scrapes one control plane every ``interval`` seconds with the operator token, region as a target label."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        target_url: str | None,
        region: str,
        token: str,
        interval: float = 1.0,
        extra_scrape_configs: list[dict[str, Any]] | None = None,
    ):
        """``target_url`` None: no control plane is scraped, only ``extra_scrape_configs`` (e.g. a fake exporter)."""
        target = urlparse(target_url or "http://127.0.0.1")
        assert target.hostname == "127.0.0.1", "tests scrape only 127.0.0.1"
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "global": {
                "scrape_interval": f"{round(interval * 1000)}ms",
                "evaluation_interval": f"{round(interval * 1000)}ms",
            },
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [
                *(extra_scrape_configs or []),
                *[
                    {
                        "job_name": "testbed-control-plane",
                        "honor_labels": True,  # testbed_tenant_info's own region label is the same value
                        "metrics_path": "/metrics",
                        # /metrics answers the operator token only (the ServiceMonitor's bearer token in a cluster)
                        "authorization": {"type": "Bearer", "credentials_file": str(workdir / "operator.token")},
                        "static_configs": [{"targets": [target.netloc], "labels": {"region": region}}],
                    }
                ]
                * (target_url is not None),
            ],
        }
        self.token = token
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "PrometheusServer":
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config))
        token_file = self.workdir / "operator.token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        self.log = open(self.workdir / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("prometheus did not become ready in 30 s")

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", body
        return body["data"]["result"]

    def value(self, promql: str, **labels: str) -> float | None:
        """The value of the one series matching ``labels``, or None."""
        for item in self.query(promql):
            if all(item["metric"].get(k) == v for k, v in labels.items()):
                return float(item["value"][1])
        return None

    def wait_for_scrape(self, after: float, timeout: float = 20.0) -> None:
        """Wait until the target has been scraped (successfully) after the epoch time ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            if targets and targets[0]["health"] == "up" and _epoch(targets[0]["lastScrape"]) > after:
                return
            time.sleep(0.2)
        raise AssertionError(f"prometheus did not scrape the target in {timeout} s: {targets}")


def _epoch(iso: str) -> float:
    from datetime import datetime

    # Prometheus writes nanoseconds; Python parses microseconds.
    head, _, rest = iso.partition(".")
    fraction = "".join(c for c in rest if c.isdigit())[:6]
    zone = rest[len("".join(c for c in rest if c.isdigit())) :] or "Z"
    return datetime.fromisoformat(f"{head}.{fraction or '0'}{zone.replace('Z', '+00:00')}").timestamp()
