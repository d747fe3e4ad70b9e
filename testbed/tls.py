"""One verifying TLS context per process for the testbed's HTTP clients.

httpx builds a new context for every client it makes, loading certifi's bundle each time (about 30 ms of CPU on a
2-core machine: 50 SDK clients took 1.6 s to build), though a context is made to be shared. Here it is built once
per value of ``SSL_CERT_FILE``/``SSL_CERT_DIR`` (which httpx reads when it builds one), by httpx's own
``create_ssl_context``, so verification stays exactly httpx's default. httpcore sets each connection's ALPN on
the context it is given; the testbed's clients never ask for HTTP/2, so every client sets the same value.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache

import httpx


def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context for the current ``SSL_CERT_FILE``/``SSL_CERT_DIR``, built once for each."""
    return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@lru_cache(maxsize=8)
def _context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """The context for these values of the two variables (httpx reads them from the environment itself)."""
    return httpx.create_ssl_context()
