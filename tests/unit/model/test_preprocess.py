import numpy as np
import pandas as pd
import pytest

from app.model.preprocess import SMALL_BATCH, UNKNOWN, Preprocessor, PreprocessorError


def _frame():
    return pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, None], "k": [5.0, 5.0, 5.0, 5.0], "c": ["a", "b", "a", None], "h": [1, 2, 3, 4]}
    )


def test_fit_learns_from_the_given_rows_only():
    pre = Preprocessor(["x", "k"], ["c", "h"]).fit(_frame())
    assert pre.means_[0] == pytest.approx(2.0)
    assert pre.scales_[1] == 1.0, "a constant column must not divide by zero"
    assert pre.vocab_["c"] == {"a": 1, "b": 2}
    assert pre.cardinalities == [3, 5]


def test_transform_scales_flags_missing_and_maps_unknown_to_zero():
    pre = Preprocessor(["x", "k"], ["c", "h"]).fit(_frame())
    out = pre.transform_batch(
        pd.DataFrame(
            {"x": [2.0, np.nan, np.inf], "k": [5.0, 5.0, 5.0], "c": ["a", "zzz", None], "h": [1, 99, 2]}
        )
    )
    assert out["numeric"].dtype == np.float32 and out["numeric"].shape == (3, 4)
    assert out["numeric"][0, 0] == pytest.approx(0.0)
    assert out["numeric"][:, 2].tolist() == [0.0, 1.0, 1.0], "missing and infinite are flagged"
    assert out["categorical"][:, 0].tolist() == [1, UNKNOWN, UNKNOWN]
    assert out["categorical"][:, 1].tolist() == [1, UNKNOWN, 2]


def test_small_and_large_batches_code_categories_identically():
    """Served batches are coded value by value, large frames by one indexed lookup: the two
    must give the same codes for every kind of value, missing ones included."""
    train = pd.DataFrame({"c": ["a", "b", "1", "2.5", "True"], "h": [1, 2, 3, 4, 5]})
    pre = Preprocessor([], ["c", "h"]).fit(train)
    values = ["a", "b", "zzz", None, np.nan, pd.NA, 1, 2.5, True, "1", "", "A"]
    hours = [1, 2, 3, 4, 5, 99, None, 2.0, 3, 1, 1, 1]
    frame = pd.DataFrame({"c": pd.Series(values, dtype=object), "h": pd.Series(hours, dtype=object)})
    large = pd.concat([frame] * (SMALL_BATCH // len(frame) + 2), ignore_index=True)
    assert len(large) > SMALL_BATCH
    by_lookup = pre.transform_batch(large)["categorical"]
    by_value = np.vstack(
        [pre.transform_batch(large.iloc[i : i + 5])["categorical"] for i in range(0, len(large), 5)]
    )
    np.testing.assert_array_equal(by_value, by_lookup)
    assert by_lookup[: len(values), 0].tolist() == [4, 5, 0, 0, 0, 0, 1, 2, 3, 1, 0, 0]
    assert by_lookup[: len(values), 1].tolist() == [1, 2, 3, 4, 5, 0, 0, 0, 3, 1, 1, 1]


def test_json_round_trip_gives_identical_output():
    pre = Preprocessor(["x", "k"], ["c", "h"]).fit(_frame())
    again = Preprocessor.from_json(pre.to_json())
    a, b = pre.transform_batch(_frame()), again.transform_batch(_frame())
    np.testing.assert_array_equal(a["numeric"], b["numeric"])
    np.testing.assert_array_equal(a["categorical"], b["categorical"])


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"format": "other"}', '{"format": "mlsys.preprocessor", "version": 1}']
)
def test_malformed_json_is_a_clear_error(text):
    with pytest.raises(PreprocessorError):
        Preprocessor.from_json(text)


def test_unknown_rate():
    pre = Preprocessor([], ["c"]).fit(_frame())
    assert pre.unknown_rate(pd.DataFrame({"c": ["a", "z", "z", None]}))["c"] == pytest.approx(2 / 3)
