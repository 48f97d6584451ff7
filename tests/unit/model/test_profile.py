import numpy as np
import pandas as pd
import pytest

from app.model.profile import categorical_profile, numeric_profile


def test_deciles_split_data_into_tenths():
    prof = numeric_profile(pd.Series(np.arange(1000.0)))
    assert len(prof["edges"]) == 9
    assert prof["proportions"] == pytest.approx([0.1] * 10)


def test_constant_and_empty_features_have_defined_profiles():
    const = numeric_profile(pd.Series([3.0] * 100))
    assert len(const["edges"]) == 1 and sum(const["proportions"]) == pytest.approx(1.0)
    empty = numeric_profile(pd.Series([np.nan, np.nan]))
    assert empty["missing"] == 1.0 and empty["edges"] == []


def test_category_frequencies():
    prof = categorical_profile(pd.Series(["a", "a", "b", None]))
    assert prof["frequencies"] == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 3)}
    assert prof["missing"] == 0.25
