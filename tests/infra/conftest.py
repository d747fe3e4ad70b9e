"""Each region stack runs once per session under fresh Pulumi mocks (see tests/infra/harness.py)."""

from __future__ import annotations

import pytest

from tests.infra.harness import StackRun, all_regions, load_stack_document, run_region
from testbed.config import load_region
from tests.stack_files import REAL_STACK_DIR


@pytest.fixture(scope="session")
def runs() -> dict[str, StackRun]:
    return {region: run_region(region) for region in all_regions()}


@pytest.fixture(scope="session")
def stacks():
    return {region: load_region(region, REAL_STACK_DIR) for region in all_regions()}


@pytest.fixture(params=all_regions())
def region(request) -> str:
    return request.param


@pytest.fixture
def document(region):
    return load_stack_document(region)
