"""`mlsys predict` end to end: a folder of csv and parquet files, bad rows among them, scored on
Ray Data by a registered model through the command line, checked row by row against the
in-process Predictor."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from app.cli import app, main
from app.data.synthetic import Defects, generate
from app.features.transforms import add_features
from app.model.predictor import Predictor
from app.registry.registry import CHAMPION, Registry
from tests.configs import config_dict, make_config
from tests.helpers import quick_bundle

pytestmark = pytest.mark.integration
CLEAN = Defects(0, 0, 0, 0, 0, 0)
BAD = {  # user_id -> (column, value, the reason's start)
    900_001: ("age", "abc", "age: not a number"),
    900_002: ("income", "inf", "income: not a finite number"),
    900_003: ("event_timestamp", "yesterday", "event_timestamp: not an ISO 8601 timestamp"),
    900_004: ("country", "X" * 300, "country: longer than"),
    900_005: ("income", "1e20", "income: magnitude above"),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch")
    cfg = make_config(tmp)
    data = {**config_dict(), "storage": {"root": str(tmp / "store")}, "ray": cfg.ray.model_dump()}
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    train = generate(2000, seed=3, defects=CLEAN)
    registry = Registry(cfg)
    first = registry.register(quick_bundle(cfg, train, seed=1), params={}, alias=CHAMPION)
    second = registry.register(quick_bundle(cfg, train, seed=2), params={}, alias=None)
    rows = generate(3000, seed=9, defects=CLEAN).drop(columns=["label"]).reset_index(drop=True)
    rows["user_id"] = np.arange(1, len(rows) + 1)  # unique: every row is found again by its id
    folder = tmp / "input"
    folder.mkdir()
    text = rows.astype(str)
    text.iloc[:1000].to_csv(folder / "a.csv", index=False)
    bad = text.iloc[1000:1005].copy()
    for i, (uid, (column, value, _)) in enumerate(BAD.items()):
        bad.iloc[i, bad.columns.get_loc("user_id")] = str(uid)
        bad.iloc[i, bad.columns.get_loc(column)] = value
    missing_id = text.iloc[1005:1006].assign(user_id="")
    pd.concat([text.iloc[1006:1500], bad, missing_id]).to_csv(folder / "b.csv", index=False)
    rows.iloc[1500:2400].to_parquet(folder / "c.parquet", index=False)
    typed_bad = rows.iloc[2400:2401].assign(user_id=900_006, income=np.inf)
    pd.concat([rows.iloc[2401:], typed_bad]).to_parquet(folder / "d.parquet", index=False)
    good = pd.concat([rows.iloc[:1000], rows.iloc[1006:1500], rows.iloc[1500:]]).drop(index=2400)
    return {
        "tmp": tmp,
        "cfg": cfg,
        "config": str(config),
        "input": str(folder),
        "good": good.set_index("user_id"),
        "versions": (first, second),
        "registry": registry,
        "input_rows": len(rows),
    }


def run(setup, *args: str):
    return CliRunner().invoke(app, ["--config", setup["config"], "predict", *args])


def expected_scores(setup, version: int, frame: pd.DataFrame) -> np.ndarray:
    cfg = setup["cfg"]
    typed = frame.reset_index()
    typed["event_timestamp"] = pd.to_datetime(typed["event_timestamp"], utc=True)
    predictor = Predictor.from_bundle(setup["registry"].load(version), version=version)
    return predictor.predict_proba(add_features(typed, cfg))


def test_every_row_is_scored_as_in_process_or_quarantined_with_its_reason(setup):
    out = setup["tmp"] / "out"
    result = run(setup, "--input", setup["input"], "--output", str(out), "--batch-size", "400")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert 2 <= len(lines) <= 3 and "rows/s" in lines[0], lines
    predictions = pq.read_table(out / "predictions").to_pandas()
    quarantine = pq.read_table(out / "quarantine").to_pandas()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == len(predictions) + len(quarantine) == setup["input_rows"]

    good = setup["good"]
    assert sorted(predictions["user_id"]) == sorted(good.index)
    scored = predictions.set_index("user_id").loc[good.index]
    expected = expected_scores(setup, setup["versions"][0], good)
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, atol=1e-6)
    assert (scored["label"] == (expected >= 0.5)).all()
    assert (predictions["model_version"] == setup["versions"][0]).all()
    assert predictions["request_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert predictions["request_id"].is_unique

    raw = [json.loads(r) for r in quarantine["_raw"]]
    reasons = dict(zip([r["user_id"] for r in raw], quarantine["_reason"], strict=True))
    for uid, (_, _, reason) in BAD.items():
        assert reasons[str(uid)].startswith(reason), (uid, reasons)
    assert reasons[None] == "user_id: missing id"
    assert reasons["900006"] == "income: not a finite number"  # a parquet float, not text
    assert len(quarantine) == len(BAD) + 2


def test_batches_stream_through_in_bounded_pieces(setup):
    """The run's rows came back as many batches, none larger than the batch size: the input was
    never gathered whole."""
    out = setup["tmp"] / "streamed"
    result = run(setup, "--input", setup["input"], "--output", str(out), "--batch-size", "300")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["batches"] >= summary["rows_in"] // 300
    assert 0 < summary["max_batch_rows"] <= 300


def test_a_version_is_chosen_by_number(setup):
    out = setup["tmp"] / "second"
    second = setup["versions"][1]
    result = run(setup, "--input", setup["input"], "--output", str(out), "--version", str(second))
    assert result.exit_code == 0, result.output
    predictions = pq.read_table(out / "predictions").to_pandas().set_index("user_id")
    good = setup["good"]
    assert (predictions["model_version"] == second).all()
    expected = expected_scores(setup, second, good)
    np.testing.assert_allclose(predictions.loc[good.index, "score"].to_numpy(), expected, atol=1e-6)


def bad_input_cases(setup) -> dict[str, list[str]]:
    tmp = setup["tmp"]
    (tmp / "empty").mkdir(exist_ok=True)
    (tmp / "junk.parquet").write_bytes(b"not parquet at all")
    pd.DataFrame({"age": [1]}).to_csv(tmp / "narrow.csv", index=False)
    (tmp / "taken").mkdir(exist_ok=True)
    (tmp / "taken" / "keep.txt").write_text("someone's file")
    fresh = str(tmp / "never")
    return {
        "missing input": ["--input", str(tmp / "nope"), "--output", fresh],
        "empty folder": ["--input", str(tmp / "empty"), "--output", fresh],
        "unreadable file": ["--input", str(tmp / "junk.parquet"), "--output", fresh],
        "missing columns": ["--input", str(tmp / "narrow.csv"), "--output", fresh],
        "unknown version": ["--input", setup["input"], "--output", fresh, "--version", "99"],
        "unknown alias": ["--input", setup["input"], "--output", fresh, "--alias", "nobody"],
        "output not empty": ["--input", setup["input"], "--output", str(tmp / "taken")],
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing input",
        "empty folder",
        "unreadable file",
        "missing columns",
        "unknown version",
        "unknown alias",
        "output not empty",
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(setup, case, monkeypatch, capsys):
    args = bad_input_cases(setup)[case]
    monkeypatch.setattr(sys, "argv", ["mlsys", "--config", setup["config"], "predict", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    # The shared test cluster forwards its processes' log lines ("(pid=...)") to
    # this process's stderr at any time; the command's own output is what is checked.
    own = [line for line in err.splitlines() if "(pid=" not in line]
    assert len(own) == 1 and own[0].startswith("error:") and "Traceback" not in err, err
    assert not (setup["tmp"] / "never").exists()
    assert (setup["tmp"] / "taken" / "keep.txt").exists()


def test_a_run_that_fails_midway_leaves_no_output(setup, monkeypatch, capsys):
    """A csv line with too many fields fails the read after other rows were scored: nothing is
    published, and no staging folder is left behind."""
    folder = setup["tmp"] / "broken"
    folder.mkdir()
    rows = generate(50, seed=4, defects=CLEAN).drop(columns=["label"]).astype(str)
    text = rows.to_csv(index=False) + "1,2,3,4,5,6,7,8,9,10\n"
    (folder / "x.csv").write_text(text)
    out = setup["tmp"] / "half"
    args = ["mlsys", "--config", setup["config"], "predict", "--input", str(folder), "--output", str(out)]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert "failed" in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in setup["tmp"].iterdir() if p.name.startswith(".half")]
