"""The control plane as served (``python -m operators.control_plane``) refuses a request head that never ends, before
anyone has to show a token: a client streaming one endless header is cut off after a bounded amount, the server's
memory does not follow it, and the server goes on answering (docs/operators/scale.md, "The server's HTTP parts")."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.replicas import ReplicaSet, noop_settings, stack_with_tenants

pytestmark = pytest.mark.integration  # a control-plane process

SERVED = [sys.executable, "-m", "operators.control_plane"]  # as the testbed and the image run it
MIB = 2**20


def resident_mib(pid: int) -> float:
    """A process's resident memory (Linux)."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def stream_one_header(host: str, port: int, limit: int) -> int:
    """Send a request whose one header grows until the server stops reading or ``limit`` bytes went; bytes sent."""
    sent = 0
    chunk = b"a" * 65536
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: testbed\r\nX-Endless: ")
        try:
            while sent < limit:
                conn.sendall(chunk)
                sent += len(chunk)
        except OSError:  # refused: the server answered and closed the connection
            pass
    return sent


def test_an_endless_request_head_is_cut_off_and_costs_no_memory(tmp_path):
    stack, _ = stack_with_tenants(tmp_path, 1, {})
    settings = noop_settings(tmp_path, stack, f"sqlite:///{tmp_path / 'cp.db'}")
    with ReplicaSet(settings, tmp_path, count=1, command=SERVED) as served:
        replica = served.replicas[0]
        before = resident_mib(replica.pid)
        sent = stream_one_header(replica.settings.host, replica.settings.port, 64 * MIB)
        grown = resident_mib(replica.pid) - before
        assert httpx.get(replica.url + "/healthz", timeout=30).status_code == 200
    assert sent < 8 * MIB, f"the server read {sent / MIB:.0f} MiB of one header"
    assert grown < 16, f"the server grew by {grown:.0f} MiB"
