"""Serve the control plane from a thread on 127.0.0.1 (tests, benchmarks)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import uvicorn
from fastapi import FastAPI

from operators.control_plane.__main__ import SERVER_PARTS  # the parts the control plane is served with
from testbed.net import HOST, free_port
from tests.waiting import wait_until


@contextmanager
def serve_in_thread(app: FastAPI, port: int | None = None, timeout: float = 20.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yield its URL; stop it on exit."""
    port = port or free_port()
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False, **SERVER_PARTS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError(f"control plane did not start on {HOST}:{port}")
        return server.started

    wait_until(started, timeout, f"the control plane on {HOST}:{port}", every=0.02)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
