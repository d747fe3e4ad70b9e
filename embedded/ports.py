"""Loopback ports: everything the local testbed serves binds to 127.0.0.1 only."""

from __future__ import annotations

import socket
from contextlib import ExitStack
from typing import Iterable, Mapping

from testbed.net import HOST, free_port

__all__ = ["HOST", "allocate_ports", "free_port"]


def allocate_ports(names: Iterable[str], previous: Mapping[str, int] | None = None) -> dict[str, int]:
    """One distinct free port per name, keeping a previous port where it is still free.

    Every chosen port stays bound (and listening) until all are chosen, so no two names get the
    same one. Like the servers themselves, the probe sets SO_REUSEADDR: a port whose last
    connections linger in TIME_WAIT after a crash is free to reuse, so a component keeps its port.
    """
    previous = previous or {}
    ports: dict[str, int] = {}
    with ExitStack() as held:
        for name in names:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            wanted = previous.get(name)
            try:
                sock.bind((HOST, wanted or 0))
                sock.listen(1)
            except OSError:  # taken since: a fresh one
                sock.close()
                sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind((HOST, 0))
                sock.listen(1)
            ports[name] = sock.getsockname()[1]
    return ports
