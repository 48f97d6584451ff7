"""Batch scoring's input: csv and parquet files, their headers checked, their rows counted."""

from __future__ import annotations

import pandas as pd
import pytest

from app.batch.checks import Layout
from app.batch.inputs import count_rows, input_files, layout_of
from app.data.schema import DataError
from tests.configs import make_config

FEATURES = {
    "age": [30, 40],
    "income": [1.0, 2.0],
    "score": [0.1, 0.2],
    "country": ["US", "GB"],
    "gender": ["F", "M"],
}


def test_only_csv_and_parquet_are_read(tmp_path):
    pd.DataFrame(FEATURES).to_json(tmp_path / "rows.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match="csv and parquet"):
        input_files(str(tmp_path))


def test_every_file_needs_the_features_and_the_asked_keys_and_the_entity_is_carried_when_present(tmp_path):
    cfg = make_config(tmp_path)
    pd.DataFrame(FEATURES).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({**FEATURES, "user_id": [1, 2]}).to_parquet(tmp_path / "b.parquet")
    paths = input_files(str(tmp_path))
    assert layout_of(paths, cfg.dataset, ()) == Layout(entity="user_id")
    assert layout_of(paths[:1], cfg.dataset, ()) == Layout(entity=None)
    with pytest.raises(DataError, match=r"missing required column\(s\) \['ref'\]"):
        layout_of(paths, cfg.dataset, ("ref",))
    for clash in ("age", "score", "request_id", "_reason"):  # a feature, or an output column
        with pytest.raises(DataError, match=f"--key '{clash}'"):
            layout_of(paths, cfg.dataset, (clash,))
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    pd.DataFrame({"age": [1]}).to_csv(narrow / "n.csv", index=False)
    with pytest.raises(DataError, match="missing required column"):
        layout_of(input_files(str(narrow)), cfg.dataset, ())


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    """Spreadsheet exports start with a byte-order mark: the entity named first is still found."""
    cfg = make_config(tmp_path)
    pd.DataFrame({"user_id": [1, 2], **FEATURES}).to_csv(
        tmp_path / "export.csv", index=False, encoding="utf-8-sig"
    )
    assert (tmp_path / "export.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert layout_of(input_files(str(tmp_path)), cfg.dataset, ()) == Layout(entity="user_id")


def test_empty_and_corrupt_files_are_named(tmp_path):
    cfg = make_config(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        layout_of([str(tmp_path / "empty.csv")], cfg.dataset, ())
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable parquet file"):
        layout_of([str(tmp_path / "bad.parquet")], cfg.dataset, ())


def test_rows_are_counted_from_parquet_footers_and_by_parsing_csv(tmp_path):
    cfg = make_config(tmp_path)
    frame = pd.DataFrame({k: v * 50 for k, v in FEATURES.items()})
    frame.to_parquet(tmp_path / "a.parquet")
    text = frame.to_csv(index=False).replace("US,", '"U\nS",', 1)  # a quoted line break: one row
    (tmp_path / "b.csv").write_text(text)
    paths = input_files(str(tmp_path))
    assert count_rows(paths, cfg.dataset, Layout(entity=None)) == 200
