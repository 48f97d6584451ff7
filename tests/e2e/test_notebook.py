"""notebooks/walkthrough.ipynb runs top to bottom on small data, in a fresh kernel."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_walkthrough_notebook_executes_with_its_charts(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSYS_NOTEBOOK_ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("MLSYS_NOTEBOOK_PORT", "8127")
    monkeypatch.setenv("RAY_ADDRESS", "")
    nb = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    code = "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "def " not in code and "class " not in code  # the notebook defines no logic
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})]
    assert len(images) == 6  # distributions, learning curve, three drift charts, the A/B chart
    text = "".join(str(o.get("text", "")) for o in outputs)
    assert "drifted features:" in text and "income" in text.split("drifted features:")[1][:200]
    assert os.environ.get("MLSYS_NOTEBOOK_ROOT") == str(tmp_path / "store")
