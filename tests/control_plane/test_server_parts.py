"""The control plane as served (``python -m operators.control_plane``) parses HTTP with httptools and runs on uvloop,
not on the pure-Python h11 and asyncio loop uvicorn falls back to when they are missing (docs/operators/scale.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.replicas import ReplicaSet, noop_settings, stack_with_tenants

pytestmark = pytest.mark.integration  # a control-plane process

SERVED = [sys.executable, "-m", "operators.control_plane"]  # as the testbed and the image run it


def mapped_libraries(pid: int) -> set[str]:
    """The paths of the shared objects a process has loaded (Linux)."""
    paths = (line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines())
    return {path for path in paths if path.endswith(".so")}


def test_served_with_httptools_and_uvloop(tmp_path):
    stack, (tenant,) = stack_with_tenants(tmp_path, 1, {})
    settings = noop_settings(tmp_path, stack, f"sqlite:///{tmp_path / 'cp.db'}")
    with ReplicaSet(settings, tmp_path, count=1, command=SERVED) as served:
        replica = served.replicas[0]
        token = (tmp_path / "credentials" / f"{tenant}.token").read_text().strip()
        answer = httpx.get(replica.url + "/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        loaded = mapped_libraries(replica.pid)
    assert any("/uvloop/loop." in path for path in loaded), sorted(loaded)
    assert any("/httptools/parser/parser." in path for path in loaded), sorted(loaded)
