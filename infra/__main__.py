"""Pulumi entry point (``main: infra/`` in Pulumi.yaml)."""

import sys
from pathlib import Path

# Pulumi puts infra/ first on sys.path; import by package name from the repository root instead.
_here = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _here)]
sys.path.insert(0, str(Path(_here).parent))

from infra.program import main  # noqa: E402

main()
