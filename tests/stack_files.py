"""Where tests read stack files from.

``TEST_STACK_DIR`` (tests/stacks) holds the test stack every test uses unless it is about the real
regions; ``REAL_STACK_DIR`` is the checkout with the five real ``Pulumi.<region>.yaml`` files, read
explicitly by the tests that are about them (tests/testbed/test_config.py, tests/infra).
"""

from __future__ import annotations

from pathlib import Path

from testbed.config import repo_root

TEST_STACK_DIR = Path(__file__).resolve().parent / "stacks"
REAL_STACK_DIR = repo_root()
