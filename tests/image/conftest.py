"""The testbed image without Docker: the project's wheel, built from exactly the image's build context, installed
with its pinned dependencies into a clean virtual environment, as the Dockerfile's runtime stage installs it.

``image_env`` attributes: ``root`` (scratch folder), ``python``, ``bin`` (the venv's scripts), ``env`` (a process
environment that sees only the venv), ``wheel``. Timings are printed in the terminal summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from infra.image import CONTEXT
from testbed.config import repo_root

# The extras the Dockerfile installs (PostgreSQL and S3 drivers for MLflow and the control plane).
EXTRAS = "postgres,s3"
TIMINGS: dict[str, float] = {}


@dataclass
class ImageEnv:
    root: Path
    venv: Path
    wheel: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    @property
    def install_env(self) -> dict[str, str]:
        """This process's environment minus anything pointing at the checkout or another environment (pip keeps
        its configuration and cache)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in (
                "PYTHONPATH",
                "PYTHONHOME",
                "VIRTUAL_ENV",
                "KUBECONFIG",
                "TESTBED_HOME",
                "TESTBED_STACK_DIR",
                "TESTBED_CONTROL_PLANE_SETTINGS",
                "RAY_ADDRESS",
            )
        }
        env.update(PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(self.venv))
        return env

    @property
    def env(self) -> dict[str, str]:
        """What the image's processes get: the venv only, an empty HOME (no ~/.kube/config), no usage stats."""
        return {**self.install_env, "HOME": str(self.root / "home"), "RAY_USAGE_STATS_ENABLED": "0"}


def _timed(name: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    TIMINGS[name] = time.perf_counter() - started
    if result.returncode != 0:
        pytest.fail(f"{name} failed ({' '.join(argv)}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def copy_context(destination: Path) -> None:
    """What the Docker build is given (.dockerignore and infra.image.CONTEXT): the wheel is built from this only."""
    destination.mkdir(parents=True, exist_ok=True)
    for entry in CONTEXT:
        source = repo_root() / entry
        if source.is_dir():
            shutil.copytree(source, destination / entry, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, destination / entry)


@pytest.fixture(scope="session")
def image_env() -> Iterator[ImageEnv]:
    root = Path(tempfile.mkdtemp(prefix="tb-image-"))
    try:
        (root / "home").mkdir()
        context, wheels = root / "context", root / "wheels"
        copy_context(context)
        # Stage 1 of the Dockerfile, for the project itself: its wheel from the build context.
        _timed(
            "wheel build",
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(context)],
            cwd=root,
        )
        [wheel] = wheels.glob("regional_ai_testbed-*.whl")
        venv = root / "venv"
        _timed("venv", [sys.executable, "-m", "venv", str(venv)], cwd=root)
        image = ImageEnv(root, venv, wheel)
        # Stage 2: the wheel and its pinned dependencies (from the package index, through pip's cache). No bytecode
        # compilation: it is most of pip's time here, and Python compiles what it imports anyway.
        _timed(
            "install",
            [image.python, "-m", "pip", "install", "--quiet", "--no-compile", f"{wheel}[{EXTRAS}]"],
            cwd=root,
            env=image.install_env,
        )
        _timed("pip check", [image.python, "-m", "pip", "check"], cwd=root, env=image.install_env)
        yield image
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.write_line("testbed image venv: " + ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items()))
