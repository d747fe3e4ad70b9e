"""Control-plane fixtures: a throwaway PostgreSQL server (one per session), a fresh database per test."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests import postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    if not postgres.available():
        if os.environ.get("CI"):
            pytest.fail(postgres.MISSING)
        pytest.skip(postgres.MISSING)
    with postgres.postgres_server() as server:
        yield server


@pytest.fixture()
def postgres_url(postgres_server: postgres.PostgresServer) -> str:
    """The URL of a new, empty database."""
    return postgres_server.create_database()
