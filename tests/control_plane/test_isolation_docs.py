"""The isolation statement (docs/operators/isolation.md) names tests that exist, and the README's first screen
states the local-mode line that `testbed up` and `testbed status` print."""

from __future__ import annotations

import re
from pathlib import Path

from testbed.isolation import LOCAL_MODE_LINE

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "operators" / "isolation.md"


def test_every_sentence_names_tests_that_exist():
    text = DOC.read_text(encoding="utf-8")
    named = re.findall(r"`((?:[a-z_]+/)?test_[a-z0-9_]+\.py)(?:::(test_[a-z0-9_]+))?`", text)
    assert len(named) >= 15
    current = None
    for path, function in named:
        current = REPO / "tests" / path if "/" in path else current
        assert current is not None and current.exists(), path
        if function:
            assert re.search(rf"^def {function}\(", current.read_text(encoding="utf-8"), re.M), f"{path}::{function}"
    for chained in re.findall(r"`::(test_[a-z0-9_]+)`", text):  # names continuing the file named before them
        assert any(
            re.search(rf"^def {chained}\(", p.read_text(encoding="utf-8"), re.M)
            for p in (REPO / "tests").rglob("test_*.py")
        ), chained


def test_the_readme_states_the_local_mode_line():
    first_screen = "\n".join((REPO / "README.md").read_text(encoding="utf-8").splitlines()[:30])
    assert "isolation between companies here is by the API only" in LOCAL_MODE_LINE
    assert "isolation between companies here is by the API only" in " ".join(first_screen.split())
    assert "docs/operators/isolation.md" in first_screen
