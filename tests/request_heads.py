"""A client that streams one endless request header: what a server must cut off before anyone shows a token."""

from __future__ import annotations

import socket


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
