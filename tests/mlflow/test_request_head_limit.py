"""MLflow's server, started as the testbed starts it, cuts off a request head that never ends, before its
authentication: its uvicorn keeps h11 (``testbed/mlflow_server.py``, ``UVICORN_PARTS``), though httptools, which
buffers a head of any length, is installed for the control plane."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from tests.request_heads import stream_one_header

pytestmark = pytest.mark.integration  # a real MLflow server

MIB = 2**20


def test_an_endless_request_head_is_cut_off(secured):
    url = urlsplit(secured.url)
    sent = stream_one_header(url.hostname, url.port, 64 * MIB)
    assert sent < 8 * MIB, f"MLflow's server read {sent / MIB:.0f} MiB of one header"
    assert httpx.get(secured.url + "/health", timeout=30).status_code == 200
