import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from app.data.synthetic import UNSEEN_COUNTRY, Defects, generate, generate_chunks, write_dataset

START = "2026-01-05"


def test_deterministic_for_seed_and_start():
    a = generate(3000, seed=7, start=START)
    b = generate(3000, seed=7, start=START)
    c = generate(3000, seed=8, start=START)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_exact_row_count_across_chunks():
    chunks = list(generate_chunks(2500, seed=1, start=START, chunk_rows=1000))
    assert sum(len(c) for c in chunks) == 2500
    assert len(chunks) >= 3
    ids = [set(c["user_id"]) for c in chunks]
    assert not ids[0] & ids[1], "chunks must not reuse user ids"


def test_users_have_several_events_over_weeks():
    df = generate(20_000, seed=1, start=START)
    per_user = df.groupby("user_id").size()
    assert per_user.median() >= 5
    ts = pd.to_datetime(df["event_timestamp"], errors="coerce")
    assert (ts.max() - ts.min()).days >= 50


def test_defects_are_present():
    df = generate(50_000, seed=3, start=START)
    assert df["income"].isna().sum() > 0
    assert df["label"].isna().sum() > 0
    assert ((df["age"] < 0) | (df["age"] > 120)).sum() > 0
    assert pd.to_datetime(df["event_timestamp"], errors="coerce", format="ISO8601").isna().sum() > 0
    assert df.duplicated(["user_id", "event_timestamp"]).sum() > 0


def test_label_depends_on_the_cross_of_age_bucket_and_gender():
    df = generate(80_000, seed=2, start=START).dropna(subset=["label", "age"])
    young_f = df[(df.age >= 25) & (df.age < 35) & (df.gender == "F")].label.mean()
    young_m = df[(df.age >= 25) & (df.age < 35) & (df.gender == "M")].label.mean()
    old_f = df[(df.age >= 50) & (df.age < 65) & (df.gender == "F")].label.mean()
    old_m = df[(df.age >= 50) & (df.age < 65) & (df.gender == "M")].label.mean()
    assert young_f - young_m > 0.1
    assert old_f - old_m > 0.1


def test_drift_shifts_income_and_countries_and_adds_an_unseen_one():
    base = generate(30_000, seed=1, start=START)
    drifted = generate(30_000, seed=1, start=START, drift=1.0)
    assert drifted["income"].median() > base["income"].median() * 1.3
    assert UNSEEN_COUNTRY not in set(base["country"])
    assert (drifted["country"] == UNSEEN_COUNTRY).mean() > 0.1
    assert (drifted["country"] == "IN").mean() > (base["country"] == "IN").mean() + 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="rows"):
        next(generate_chunks(0))
    with pytest.raises(ValueError, match="drift"):
        next(generate_chunks(10, drift=2))


@pytest.mark.parametrize("name", ["one.parquet", "one.csv", "one.jsonl"])
def test_write_single_file(tmp_path, name):
    paths = write_dataset(generate_chunks(1500, seed=1, start=START, chunk_rows=500), tmp_path / name)
    assert paths == [tmp_path / name]
    reader = {"parquet": pd.read_parquet, "csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True)}
    assert len(reader[name.split(".")[1]](paths[0])) == 1500
    assert [p.name for p in tmp_path.iterdir()] == [name], "no temporary file may be left"


def test_write_folder(tmp_path):
    paths = write_dataset(generate_chunks(1500, seed=1, start=START, chunk_rows=500), tmp_path / "raw")
    assert len(paths) == 3
    assert sum(pq.read_metadata(p).num_rows for p in paths) == 1500
    assert np.all([p.parent == tmp_path / "raw" for p in paths])
    more = write_dataset(
        generate_chunks(500, seed=2, start=START, chunk_rows=500), tmp_path / "raw", fmt="csv"
    )
    assert more == [tmp_path / "raw" / "part-00000.csv"] and len(list((tmp_path / "raw").iterdir())) == 4


def test_an_interrupted_folder_write_leaves_no_partial_data_set(tmp_path):
    def two_chunks_then_ctrl_c():
        yield from generate_chunks(1000, seed=1, start=START, chunk_rows=500)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(two_chunks_then_ctrl_c(), tmp_path / "raw")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


def test_concept_drift_changes_the_labels_relation_and_not_the_features():
    clean = Defects(0, 0, 0, 0, 0, 0)
    before = generate(20_000, seed=3, start=START, defects=clean)
    after = generate(20_000, seed=3, start=START, defects=clean, concept=1.0)
    features = [c for c in before.columns if c != "label"]
    pd.testing.assert_frame_equal(before[features], after[features])  # the same rows, other labels
    high_score = before["score"] > 0.7
    rate = lambda df, rows: df.loc[rows, "label"].astype(float).mean()  # noqa: E731
    assert rate(before, high_score) > rate(before, ~high_score) + 0.1
    assert rate(after, high_score) < rate(after, ~high_score) - 0.1  # the score now lowers the odds
    with pytest.raises(ValueError, match="concept"):
        generate(10, concept=1.5)
