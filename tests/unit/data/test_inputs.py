"""Where ETL looks for its input, and what it says when there is none."""

from __future__ import annotations

import pytest

from app.config import RAY_JOB_ENV
from app.data.inputs import resolve_inputs
from app.data.schema import DataError


def test_a_missing_relative_input_in_a_ray_job_says_how_to_point_the_job_at_data(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="does not exist$"):
        resolve_inputs("data/raw/")
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    with pytest.raises(DataError, match="MLSYS_DATASET__SOURCE"):
        resolve_inputs("data/raw/")
    with pytest.raises(DataError, match="does not exist$"):  # an absolute path needs no hint
        resolve_inputs(str(tmp_path / "nowhere"))
