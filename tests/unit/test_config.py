import copy
import logging
import subprocess
import sys

import pytest
import yaml

from app.config import ConfigError, apply_env_overrides, load_config, parse_config
from tests.configs import LOCAL_CONFIG, config_dict


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
    assert _error(lambda d: d["mlp"].update(epochs="ten")).startswith("mlp.epochs:")


def test_the_root_is_a_folder_not_an_object_store_uri():
    msg = _error(lambda d: d.setdefault("storage", {}).update(root="s3://bucket/mlsys"))
    assert msg.startswith("storage.root:") and "storage.catalog" in msg and "storage.state" in msg


@pytest.mark.parametrize("state", ["/mnt/state", "s3://", "gs://bucket/x"])
def test_the_state_store_must_be_an_s3_uri(state):
    msg = _error(lambda d: d.setdefault("storage", {}).update(state=state))
    assert msg.startswith("storage.state:") and "s3://bucket/prefix" in msg


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
        d["mlp"]["epochs"] = "x"
        d["tune"]["bogus"] = 1

    assert len(_error(two_problems).splitlines()) == 2


def test_env_overrides_nested_keys_and_parse_values():
    env = {"MLSYS_MLP__EPOCHS": "3", "MLSYS_FEATURES__ONLINE__TYPE": "redis", "OTHER": "x"}
    cfg = parse_config(config_dict(), environ=env)
    assert cfg.mlp.epochs == 3
    assert cfg.features.online.type == "redis"


def test_env_override_of_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="mlp.epoch: unknown key"):
        parse_config(config_dict(), environ={"MLSYS_MLP__EPOCH": "3"})


def test_env_override_cannot_descend_into_a_value():
    with pytest.raises(ConfigError, match="does not name a config section"):
        apply_env_overrides({"mlp": {"epochs": 3}}, {"MLSYS_MLP__EPOCHS__X": "1"})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_fingerprint_changes_with_config():
    a = parse_config(config_dict(), environ={})
    b = parse_config(config_dict(), environ={"MLSYS_MLP__EPOCHS": "2"})
    assert a.fingerprint() == parse_config(config_dict(), environ={}).fingerprint()
    assert a.fingerprint() != b.fingerprint()


# ---------------------------------------------------------------- the previous section names


def _old_layout() -> dict:
    """The shipped config as the previous release spelled it: `train:` held the MLP's and the
    shared settings, `model:` the family and the trees' settings."""
    d = copy.deepcopy(config_dict())
    d["train"] = {**d.pop("mlp"), "min_rows": 150, "max_failures": 1, "valid_fraction": 0.2}
    d["model"] = {"family": d["model"]["family"], **d.pop("gbdt"), "cpus_per_worker": 2}
    return d


def _deprecations(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "app.config" and "deprecated" in r.getMessage()
    ]


def test_the_shipped_config_uses_the_new_sections_and_says_nothing(caplog):
    d = config_dict()
    assert {"model", "mlp", "gbdt"} <= set(d) and "train" not in d
    with caplog.at_level(logging.WARNING):
        parse_config(d, environ={})
    assert _deprecations(caplog) == []


def test_an_old_config_loads_as_the_new_one_with_one_line_per_old_section(caplog):
    with caplog.at_level(logging.WARNING):
        old = parse_config(_old_layout(), environ={})
    new = parse_config(config_dict(), environ={})
    assert old.mlp == new.mlp
    assert (old.model.min_rows, old.model.max_failures, old.model.valid_fraction) == (150, 1, 0.2)
    assert old.gbdt == new.gbdt.model_copy(update={"cpus_per_worker": 2})
    lines = _deprecations(caplog)
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "`train:`" in lines[0] and "epochs" in lines[0] and "`mlp:`" in lines[0]
    assert "min_rows" in lines[0] and "`model:`" in lines[0]
    assert "`model:`" in lines[1] and "rounds" in lines[1] and "`gbdt:`" in lines[1]


def test_old_environment_names_set_the_new_keys_over_the_file(caplog):
    env = {"MLSYS_TRAIN__EPOCHS": "3", "MLSYS_TRAIN__MIN_ROWS": "60", "MLSYS_MODEL__ROUNDS": "7"}
    with caplog.at_level(logging.WARNING):
        cfg = parse_config(config_dict(), environ=env)
        also_old_file = parse_config(_old_layout(), environ=env)
    assert (cfg.mlp.epochs, cfg.model.min_rows, cfg.gbdt.rounds) == (3, 60, 7)
    assert (also_old_file.mlp.epochs, also_old_file.model.min_rows, also_old_file.gbdt.rounds) == (3, 60, 7)
    env_lines = [line for line in _deprecations(caplog) if "MLSYS_" in line]
    assert len(env_lines) == 2  # one line per load, naming each old variable and its new name
    assert "MLSYS_TRAIN__EPOCHS read as MLSYS_MLP__EPOCHS" in env_lines[0]
    assert "MLSYS_MODEL__ROUNDS read as MLSYS_GBDT__ROUNDS" in env_lines[0]


def test_a_key_in_both_its_old_and_new_place_is_an_error_naming_both():
    def both(d):
        d["train"] = {"epochs": 4}

    assert _error(both).startswith("train.epochs and mlp.epochs: both set")

    def trees_in_both(d):
        d["model"]["rounds"] = 5

    assert _error(trees_in_both).startswith("model.rounds and gbdt.rounds: both set")
    with pytest.raises(ConfigError, match="MLSYS_TRAIN__EPOCHS and MLSYS_MLP__EPOCHS"):
        parse_config(config_dict(), environ={"MLSYS_TRAIN__EPOCHS": "3", "MLSYS_MLP__EPOCHS": "4"})


def test_the_cli_shows_an_old_config_deprecation_once_on_one_line(tmp_path):
    old = _old_layout()
    old["dataset"]["colour"] = "red"  # fails right after loading: nothing heavy runs
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    code = f"import sys\nfrom app.cli import main\nsys.argv = ['mlsys', '--config', {str(path)!r}, 'train']\nmain()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stderr.splitlines()
    assert out.returncode == 2 and "dataset.colour: unknown key" in out.stderr
    assert sum("`train:` section is deprecated" in line for line in lines) == 1, out.stderr
    assert sum("`model:` are deprecated" in line for line in lines) == 1, out.stderr


# ---------------------------------------------------------------- derived feature names


def _with_columns(d, *, numeric=(), categorical=(), **keys):
    d["dataset"]["numeric"] += list(numeric)
    d["dataset"]["categorical"] += list(categorical)
    d["dataset"].update(keys)


def test_a_time_feature_clashing_with_a_data_column_is_one_line_naming_both():
    # A public data set with its own `hour` (a departure hour), once a crash deep in Ray.
    msg = _error(lambda d: _with_columns(d, numeric=["hour"]))
    assert msg == (
        "features.time: derived feature 'hour' clashes with dataset column 'hour' "
        "(dataset.numeric); rename the column with dataset.rename or drop 'hour' from features.time"
    )


@pytest.mark.parametrize("name", ["_reason", "_raw", "_part", "_bucket"])
def test_a_dataset_column_named_like_an_internal_one_is_refused(name):
    msg = _error(lambda d: _with_columns(d, categorical=[name]))
    assert msg.startswith(f"dataset.categorical: dataset column {name!r} is a name mlsys uses for ")
    assert "dataset.rename" in msg


@pytest.mark.parametrize(
    ("mutate", "start", "column"),
    [
        (lambda d: _with_columns(d, categorical=["month"]), "features.time:", "(dataset.categorical)"),
        (lambda d: _with_columns(d, entity="day_of_week"), "features.time:", "(dataset.entity)"),
        (lambda d: _with_columns(d, label="hour"), "features.time:", "(dataset.label)"),
        (
            lambda d: (_with_columns(d, numeric=["is_weekend"]), d["features"].update(time=["is_weekend"])),
            "features.time:",
            "(dataset.numeric)",
        ),
        (lambda d: _with_columns(d, numeric=["age_bucket"]), "features.buckets.age:", "(dataset.numeric)"),
        (
            lambda d: _with_columns(d, categorical=["age_bucket_x_gender"]),
            "features.crosses.0:",
            "(dataset.categorical)",
        ),
        (
            lambda d: _with_columns(d, timestamp="feature_timestamp"),
            "dataset.timestamp:",
            "'feature_timestamp'",
        ),
        (lambda d: _with_columns(d, entity="feature_timestamp"), "dataset.entity:", "'feature_timestamp'"),
    ],
    ids=[
        "time-categorical",
        "time-entity",
        "time-label",
        "is_weekend-numeric",
        "bucket",
        "cross",
        "feature_timestamp-timestamp",
        "feature_timestamp-entity",
    ],
)
def test_every_kind_of_derived_name_is_checked_against_every_dataset_column(mutate, start, column):
    msg = _error(mutate)
    assert len(msg.splitlines()) == 1
    assert msg.startswith(start)
    assert column in msg and "dataset.rename" in msg


def test_a_renamed_column_is_checked_under_its_new_name():
    msg = _error(lambda d: _with_columns(d, numeric=["hour"], rename={"DepHour": "hour"}))
    assert msg.startswith("features.time: derived feature 'hour' clashes with dataset column 'hour'")


def test_every_clash_is_reported_one_line_each():
    lines = _error(lambda d: _with_columns(d, numeric=["hour", "month", "age_bucket"])).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "features.time",
        "features.time",
        "features.buckets.age",
    ]
    assert "'month'" in lines[0] and "'hour'" in lines[1]


def test_derived_names_must_not_clash_with_each_other():
    assert _error(lambda d: d["features"].update(time=["hour", "hour"])) == (
        "features.time.1: 'hour' is listed more than once"
    )
    twice = [["age_bucket", "gender"], ["age_bucket", "gender"]]
    assert _error(lambda d: d["features"].update(crosses=twice)) == (
        "features.crosses.1: derived feature 'age_bucket_x_gender' is already made by features.crosses.0"
    )
    assert _error(lambda d: d["features"].update(crosses=[["gender", "gender"]])).startswith(
        "features.crosses.0: a column appears more than once"
    )


def test_a_config_whose_data_has_its_own_time_columns_under_other_names_loads():
    data = copy.deepcopy(config_dict())
    _with_columns(data, numeric=["dep_hour"], categorical=["day"], rename={"hour": "dep_hour"})
    cfg = parse_config(data, environ={})
    assert "dep_hour" in cfg.dataset.numeric and "hour" in cfg.features.time


def test_config_derives_the_names_feature_building_makes():
    # The clash check is only as good as its copy of the naming rules in app.features.transforms.
    import pandas as pd

    from app.config import FEATURE_TIMESTAMP, TIME_FEATURES
    from app.features import transforms

    data = copy.deepcopy(config_dict())
    data["features"].update(
        time=list(TIME_FEATURES),
        buckets={"age": [30], "income": [10.0]},
        crosses=[["age_bucket", "gender"], ["country", "gender", "income_bucket"]],
    )
    cfg = parse_config(data, environ={})
    spec = transforms.feature_spec(cfg)
    derived = [name for name, _, _ in cfg.features.derived()]
    assert set(spec.names) - set(cfg.dataset.features) == set(derived)
    assert transforms.FEATURE_TIMESTAMP == FEATURE_TIMESTAMP
    row = {c: ["1"] for c in cfg.dataset.columns}
    row[cfg.dataset.timestamp] = [pd.Timestamp("2026-01-05T10:00", tz="UTC")]
    table = transforms.feature_table_batch(pd.DataFrame(row), cfg)
    assert table.columns.is_unique
    assert set(table.columns) == {*spec.names, cfg.dataset.entity, cfg.dataset.timestamp, FEATURE_TIMESTAMP}
