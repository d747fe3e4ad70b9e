"""The control plane as served (``python -m operators.control_plane``) refuses a request head that never ends, before
anyone has to show a token: a client streaming one endless header is cut off after a bounded amount, the server's
memory does not follow it, and the server goes on answering (docs/operators/scale.md, "The server's HTTP parts").
A head within the bound is served, on a kept-alive connection too; one over it gets a 431, whether it arrives in pieces
or in one read with the request before it."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

import httpx
import pytest

from operators.control_plane.http_parser import MAX_REQUEST_HEAD_BYTES
from tests.replicas import ReplicaSet, noop_settings, stack_with_tenants
from tests.request_heads import stream_one_header

pytestmark = pytest.mark.integration  # a control-plane process

SERVED = [sys.executable, "-m", "operators.control_plane"]  # as the testbed and the image run it
MIB = 2**20


def resident_mib(pid: int) -> float:
    """A process's resident memory (Linux)."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


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


def request_with_header(padding: int) -> bytes:
    """A kept-alive ``GET /healthz`` whose head is about ``padding`` bytes long (one padded header)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: testbed\r\nX-Padding: "
    return head + b"a" * (padding - len(head) - 4) + b"\r\n\r\n"


def answers(conn: socket.socket, count: int) -> list[bytes]:
    """The status lines of the server's next ``count`` answers (fewer if it closes the connection first)."""
    received = b""
    while received.count(b"HTTP/1.1 ") < count and (chunk := conn.recv(65536)):
        received += chunk
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", received)  # an answer follows the last one's body directly


def test_a_head_within_the_bound_is_served_and_one_over_it_gets_a_431(tmp_path):
    stack, _ = stack_with_tenants(tmp_path, 1, {})
    settings = noop_settings(tmp_path, stack, f"sqlite:///{tmp_path / 'cp.db'}")
    with ReplicaSet(settings, tmp_path, count=1, command=SERVED) as served:
        host, port = served.replicas[0].settings.host, served.replicas[0].settings.port
        within = request_with_header(MAX_REQUEST_HEAD_BYTES - 1024)
        with socket.create_connection((host, port), timeout=10) as conn:  # three on one connection, in one write
            conn.sendall(within * 3)
            assert answers(conn, 3) == [b"HTTP/1.1 200 OK"] * 3
        too_large = request_with_header(MAX_REQUEST_HEAD_BYTES + 1024)
        with socket.create_connection((host, port), timeout=10) as conn:  # in small pieces, as a slow client sends
            send_in_pieces(conn, within)
            assert answers(conn, 1) == [b"HTTP/1.1 200 OK"]
            send_in_pieces(conn, too_large)  # the same connection, kept alive
            assert answers(conn, 1) == [b"HTTP/1.1 431 Request Header Fields Too Large"]
            assert conn.recv(65536) == b""  # and closed
        with socket.create_connection((host, port), timeout=10) as conn:  # read whole, with the request before it
            conn.sendall(
                within + too_large + within
            )  # the third is never answered: the connection closes after the 431
            assert answers(conn, 3) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 431 Request Header Fields Too Large"]


def send_in_pieces(conn: socket.socket, data: bytes) -> None:
    """``data`` in pieces of 1,000 bytes, until the server closes the connection."""
    try:
        for start in range(0, len(data), 1000):
            conn.sendall(data[start : start + 1000])
    except OSError:
        pass
