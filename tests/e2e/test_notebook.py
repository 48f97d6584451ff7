"""notebooks/walkthrough.ipynb runs top to bottom on small data, in a fresh kernel."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from tests.configs import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def outputs_of(nb, marker: str) -> list:
    """The outputs of the one code cell whose source contains `marker`."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return cell.get("outputs", [])


def text_of(outputs) -> str:
    """What a cell printed and the plain-text form of what it returned."""
    return "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)


def charts(outputs, mime: str) -> list[str]:
    return [o["data"][mime] for o in outputs if mime in o.get("data", {})]


def test_walkthrough_notebook_executes_with_its_charts(tmp_path, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("MLSYS_NOTEBOOK_ROOT", str(store))
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

    # Everything ran under the throwaway root the test handed it (not the project's .mlsys).
    assert text_of(outputs_of(nb, "cfg.storage.root")).strip() == repr(str(store))
    assert (store / "raw" / "events.parquet").exists() and (store / "warehouse").is_dir()

    assert len(charts(outputs_of(nb, "plot.hist"), "image/png")) == 1  # the data set's distributions

    etl = text_of(outputs_of(nb, "run_etl(cfg"))
    count = {
        k: int(re.search(rf"^{k}\s+(\d+)\s*$", etl, re.M).group(1))
        for k in ["rows_read", "rows_written", "rows_quarantined", "duplicates"]
    }
    assert count["rows_quarantined"] > 0 and count["duplicates"] > 0, etl  # the built-in defects caught
    assert count["rows_read"] == count["rows_written"] + count["rows_quarantined"] + count["duplicates"], etl

    assert len(charts(outputs_of(nb, "learning curve"), "image/png")) == 1
    assert text_of(outputs_of(nb, "print(first.alias")).startswith("champion 1 ")  # the first model

    prediction = text_of(outputs_of(nb, "client.predict_entity(1)"))
    assert "'variant'" in prediction and "'model_version'" in prediction, prediction

    replay = text_of(outputs_of(nb, "client.replay(normal")).splitlines()
    assert [line.split(":")[0] for line in replay] == ["normal", "drifted"]
    assert all("'champion'" in line for line in replay), replay  # the control served both

    drift = outputs_of(nb, "client.drift()")
    text = text_of(drift)
    assert "drifted features:" in text and "income" in text.split("drifted features:")[1][:200]
    titles = [re.search(r"<!-- (\w+): PSI ", svg).group(1) for svg in charts(drift, "image/svg+xml")]
    assert titles == ["income", "country", "age"]  # one chart per feature, in the cell's order

    experiment = outputs_of(nb, "experiment_chart")
    (chart,) = charts(experiment, "image/svg+xml")
    assert "by variant (95 % interval)" in chart and "<!-- champion -->" in chart
    table = text_of(experiment)
    assert "requests" in table and "champion" in table
