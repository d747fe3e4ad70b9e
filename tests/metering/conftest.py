"""Fixtures for metering tests: a store with the ledger installed, tool lookup, job helpers."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from operators.control_plane.db.store import Store
from operators.control_plane.db.ledger import Ledger
from testbed.config import StackConfig, load_region

APT_HINT = "install it with `apt-get install -y prometheus` (Debian's package ships prometheus and promtool)"


def require_tool(name: str) -> str:
    """Path of a binary on PATH; a missing one fails under CI and skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not on PATH: {APT_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require_tool("prometheus")


@pytest.fixture(scope="session")
def stack() -> StackConfig:
    return load_region("gyeongnam")


@pytest.fixture()
def ledger(store: Store) -> Ledger:
    ledger = Ledger(store)
    ledger.install()
    return ledger


@pytest.fixture()
def prometheus(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory):
    """Factory: ``with prometheus(control_plane_url, token=operator_token) as prom:`` a real Prometheus scraping
    it every second with the operator token (/metrics answers nothing else)."""
    from .prometheus import PrometheusServer

    def start(target_url: str | None, token: str, region: str = "gyeongnam", **options: Any) -> PrometheusServer:
        return PrometheusServer(
            prometheus_binary, tmp_path_factory.mktemp("prometheus"), target_url, region, token, **options
        )

    return start
