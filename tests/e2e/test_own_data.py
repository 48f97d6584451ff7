"""The README's "Bringing your own data set" example, run as written: only a config file.

The config is read out of README.md itself, so the documentation cannot drift from what works.
The data is a census-income style CSV made here (nothing is downloaded): other column names, a
text label, a column name with a hyphen, and a few rows that break the config's rules.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from tests.configs import ROOT
from tests.helpers import small_cli_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BROKEN_ROWS = 30


def readme_own_data_config() -> str:
    section = (ROOT / "README.md").read_text().split("## Bringing your own data set", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def census_like(n: int, *, seed: int) -> pd.DataFrame:
    """People observed a few times over four months; income over 50K follows age, hours, gains."""
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    age = rng.integers(17, 90, n)
    hours = rng.integers(10, 70, n)
    gain = np.where(rng.random(n) < 0.15, rng.integers(1000, 20000, n), 0)
    education = rng.choice(["HS-grad", "Some-college", "Bachelors", "Masters"], n)
    logit = 0.04 * (age - 40) + 0.05 * (hours - 40) + gain / 4000 + (education == "Masters") * 1.2 - 1.0
    rich = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "person_id": rng.integers(1, n // 3, n),
            "recorded_at": [
                (now - timedelta(minutes=int(m))).isoformat() for m in rng.integers(60, 120 * 1440, n)
            ],
            "age": age,
            "hours_per_week": hours,
            "capital_gain": gain,
            "workclass": rng.choice(["Private", "Self-emp", "Federal-gov"], n),
            "education": education,
            "marital-status": rng.choice(["Married", "Never-married", "Divorced"], n),
            "sex": rng.choice(["Male", "Female"], n),
            "income": np.where(rich, ">50K", "<=50K"),
        }
    )


def test_the_readmes_own_data_example_runs_the_pipeline_with_only_its_config(tmp_path):
    (tmp_path / "mlsys.yaml").write_text(readme_own_data_config())
    folder = tmp_path / "data" / "adult"
    folder.mkdir(parents=True)
    people = census_like(6000, seed=3)
    people.loc[: BROKEN_ROWS // 2 - 1, "age"] = 250  # outside the rule's 16..100
    people.loc[BROKEN_ROWS // 2 : BROKEN_ROWS - 1, "sex"] = "unknown"  # not an allowed value
    people.iloc[:3000].to_csv(folder / "part-1.csv", index=False)
    people.iloc[3000:].to_csv(folder / "part-2.csv", index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--config", "mlsys.yaml", "pipeline"],
        cwd=tmp_path,  # the config's relative paths resolve here, as for a user in their project
        env=small_cli_env(),  # storage stays the config's default, .mlsys under the project
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(rf"rows quarantined\W+{BROKEN_ROWS}\W", out), out
    assert re.search(r"rows written\W+5,970\W", out), out
    assert "registered version 1 as champion" in out
    auc = float(re.search(r"holdout AUC (\d\.\d+)", out).group(1))
    assert auc > 0.7, out  # it learned the income signal, not noise
    assert (tmp_path / ".mlsys" / "warehouse").is_dir()  # storage defaults under the project
