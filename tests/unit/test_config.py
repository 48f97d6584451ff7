import copy

import pytest

from app.config import ConfigError, apply_env_overrides, load_config, parse_config
from tests.conftest import LOCAL_CONFIG, config_dict


def _error(mutate) -> str:
    data = copy.deepcopy(config_dict())
    mutate(data)
    with pytest.raises(ConfigError) as exc:
        parse_config(data, environ={})
    return str(exc.value)


def test_shipped_config_loads():
    cfg = load_config(LOCAL_CONFIG, environ={})
    assert cfg.dataset.columns[:3] == ["user_id", "event_timestamp", "label"]
    assert cfg.dataset.features == ["age", "income", "score", "country", "gender"]


def test_unknown_key_is_named():
    assert _error(lambda d: d["dataset"].update(colour="red")) == "dataset.colour: unknown key"


def test_wrong_type_is_named():
    assert _error(lambda d: d["train"].update(epochs="ten")).startswith("train.epochs:")


def test_missing_dataset_section():
    assert _error(lambda d: d.pop("dataset")) == "dataset: required key is missing"


def test_invalid_feature_name_suggests_rename():
    msg = _error(lambda d: d["dataset"].update(numeric=["age", "marital-status"]))
    assert msg.startswith("dataset.numeric.1: 'marital-status' cannot be a feature name")
    assert "'marital_status'" in msg


def test_label_or_entity_listed_as_feature_is_refused():
    assert "dataset.label" in _error(lambda d: d["dataset"].update(numeric=["age", "label"]))
    assert "dataset.entity" in _error(lambda d: d["dataset"].update(categorical=["user_id"]))


def test_rule_on_unknown_column():
    assert _error(lambda d: d["dataset"]["rules"].update(height={"min": 0})).startswith(
        "dataset.rules.height:"
    )


def test_cross_must_name_known_columns():
    msg = _error(lambda d: d["features"].update(crosses=[["age_bucket", "colour"]]))
    assert msg.startswith("features.crosses.0: 'colour'")


def test_bucket_on_non_numeric_column():
    assert _error(lambda d: d["features"].update(buckets={"country": [1, 2]})).startswith(
        "features.buckets.country:"
    )


def test_split_must_sum_to_one():
    msg = _error(lambda d: d["serve"]["experiment"].update(split={"champion": 0.5}))
    assert "serve.experiment.split" in msg


def test_one_line_per_problem():
    def two_problems(d):
        d["train"]["epochs"] = "x"
        d["tune"]["bogus"] = 1

    assert len(_error(two_problems).splitlines()) == 2


def test_env_overrides_nested_keys_and_parse_values():
    env = {"MLSYS_TRAIN__EPOCHS": "3", "MLSYS_FEATURES__ONLINE__TYPE": "redis", "OTHER": "x"}
    cfg = parse_config(config_dict(), environ=env)
    assert cfg.train.epochs == 3
    assert cfg.features.online.type == "redis"


def test_env_override_of_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="train.epoch: unknown key"):
        parse_config(config_dict(), environ={"MLSYS_TRAIN__EPOCH": "3"})


def test_env_override_cannot_descend_into_a_value():
    with pytest.raises(ConfigError, match="does not name a config section"):
        apply_env_overrides({"train": {"epochs": 3}}, {"MLSYS_TRAIN__EPOCHS__X": "1"})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_fingerprint_changes_with_config():
    a = parse_config(config_dict(), environ={})
    b = parse_config(config_dict(), environ={"MLSYS_TRAIN__EPOCHS": "2"})
    assert a.fingerprint() == parse_config(config_dict(), environ={}).fingerprint()
    assert a.fingerprint() != b.fingerprint()
