"""The notebooks run top to bottom against the real local testbed (their cells assert)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize(
    ("notebook", "subject"),
    [
        ("sme_quickstart.ipynb", "geoje-marine-welding"),
        ("operator_usage_report.ipynb", "operator"),
    ],
)
def test_notebook_runs(local_testbed, monkeypatch, notebook, subject):
    monkeypatch.setenv("TESTBED_URL", local_testbed.control_plane_url)
    monkeypatch.setenv("TESTBED_TOKEN", local_testbed.testbed.token(subject))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", local_testbed.mlflow_url)
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
