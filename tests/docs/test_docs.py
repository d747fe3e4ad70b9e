"""The documents' commands work: `sh local` and `python sdk` blocks run against a real local testbed;
`sh cluster` (and plain `sh`) blocks are checked against the CLI's parser, the Makefile and the
known pulumi/kubectl verbs, and are not executed here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from embedded.cli import build_parser
from testbed.config import repo_root
from tests.docs.markdown import blocks, check_command, commands, makefile_targets

STATIC = [b for b in blocks() if b.info in ("sh", "sh cluster", "sh local", "bash")]  # local ones run too


def test_the_documents_have_executed_and_checked_blocks():
    infos = {b.info for b in blocks()}
    assert {"sh local", "python sdk", "sh cluster"} <= infos, infos


@pytest.mark.parametrize("block", STATIC, ids=[b.where for b in STATIC])
def test_cluster_commands_name_what_exists(block):
    parser, targets = build_parser(), makefile_targets()
    problems = [p for words in commands(block.text) if (p := check_command(words, parser, targets))]
    assert not problems, f"{block.where}: {problems}"


def test_the_check_rejects_what_does_not_exist():
    parser, targets = build_parser(), makefile_targets()
    assert check_command(["testbed", "submit", "--no-such-flag"], parser, targets)
    assert check_command(["testbed", "no-such-command"], parser, targets)
    assert check_command(["make", "no-such-target"], parser, targets)
    assert check_command(["pulumi", "deploy"], parser, targets)
    assert check_command(["kubectl", "-n", "x", "explode"], parser, targets)
    assert check_command(["testbed", "jobs", "list", "--json"], parser, targets) is None
    assert check_command(["make", "test-fast"], parser, targets) is None


@pytest.mark.integration
def test_local_blocks_run_against_a_real_testbed(local_testbed):
    """Every `sh local` block, in document order, in one bash with the testbed's environment."""
    for block in blocks("sh local"):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.text],
            cwd=repo_root(),
            env=local_testbed.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{block.where}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.mark.integration
def test_sdk_blocks_run_against_a_real_testbed(local_testbed):
    env = {**local_testbed.env(), "TESTBED_TOKEN": local_testbed.tokens["changwon-precision"]}
    for block in blocks("python sdk"):
        result = subprocess.run(
            [sys.executable, "-c", block.text], cwd=repo_root(), env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{block.where}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
