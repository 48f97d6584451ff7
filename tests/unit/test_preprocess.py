import numpy as np
import pandas as pd
import pytest

from app.model.preprocess import UNKNOWN, Preprocessor, PreprocessorError


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
