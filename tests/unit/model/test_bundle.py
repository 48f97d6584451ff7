import json

import numpy as np
import pandas as pd
import pytest
import torch

from app.model.bundle import MANIFEST, PREPROCESSOR, TREES, WEIGHTS, BundleError, ModelBundle
from app.model.net import ModelSpec, TabularMLP
from app.model.predictor import Predictor
from app.model.preprocess import Preprocessor
from app.model.profile import reference_profile


def _bundle():
    frame = pd.DataFrame({"x": np.arange(50.0), "c": ["a", "b"] * 25})
    pre = Preprocessor(["x"], ["c"]).fit(frame)
    spec = ModelSpec(n_numeric=pre.n_numeric, cardinalities=tuple(pre.cardinalities), width=8, depth=1)
    torch.manual_seed(0)
    return ModelBundle(
        spec=spec,
        state_dict=TabularMLP(spec).state_dict(),
        preprocessor=pre,
        features=["x", "c"],
        feature_service="model_v1",
        profile=reference_profile(frame, ["x"], ["c"]),
        metrics={"holdout": {"auc": 0.7}},
        lineage={"git_sha": "abc"},
    ), frame


def test_round_trip_gives_identical_predictions(tmp_path):
    bundle, frame = _bundle()
    bundle.save(tmp_path / "b")
    loaded = ModelBundle.load(tmp_path / "b")
    np.testing.assert_array_equal(
        Predictor.from_bundle(bundle).predict_proba(frame), Predictor.from_bundle(loaded).predict_proba(frame)
    )
    assert loaded.metrics["holdout"]["auc"] == 0.7 and loaded.profile["numeric"]["x"]["edges"]


def test_tampered_weights_are_refused(tmp_path):
    bundle, _ = _bundle()
    folder = bundle.save(tmp_path / "b")
    (folder / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes() + b"x")
    with pytest.raises(BundleError, match="checksum mismatch"):
        ModelBundle.load(folder)


def test_a_pickle_payload_never_runs(tmp_path):
    """Weights replaced by a malicious pickle, checksums forged to match: weights_only refuses it."""
    bundle, _ = _bundle()
    folder = bundle.save(tmp_path / "b")

    class Boom:
        def __reduce__(self):
            return (exec, ("open('" + str(tmp_path / "pwned") + "', 'w').write('x')",))

    torch.save({"w": Boom()}, folder / WEIGHTS)
    from app.model.bundle import _sha256

    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["sha256"][WEIGHTS] = _sha256(folder / WEIGHTS)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cannot load"):
        ModelBundle.load(folder)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("damage", ["manifest", "preprocessor", "missing"])
def test_corrupt_bundles_fail_clearly(tmp_path, damage):
    bundle, _ = _bundle()
    folder = bundle.save(tmp_path / "b")
    if damage == "manifest":
        (folder / MANIFEST).write_text("{not json")
    elif damage == "preprocessor":
        (folder / PREPROCESSOR).write_text("{}")
    else:
        (folder / PREPROCESSOR).unlink()
    with pytest.raises(BundleError):
        ModelBundle.load(folder)


# ------------------------------------------------------------------ model families


def _tree_bundle(rows: int = 400):
    """A small XGBoost bundle trained in-process, with missing numerics and an unseen category."""
    from app.model.trees import TreeSpec
    from app.training.gbdt import arrays_dmatrix, boost, tree_spec

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "c": rng.choice(["a", "b", "c"], size=rows)})
    frame.loc[::7, "x"] = np.nan
    frame["y"] = ((frame["x"].fillna(0) + (frame["c"] == "b")) > 0.3).astype(int)
    pre = Preprocessor(["x"], ["c"]).fit(frame)
    arrays = {**pre.transform_batch(frame), "label": frame["y"].to_numpy(dtype=np.float32)}
    spec = TreeSpec.for_preprocessor(pre)
    hp = {"learning_rate": 0.3, "max_depth": 3, "reg_lambda": 1.0, "min_child_weight": 1.0}
    result = boost({**hp, "rounds": 30, "early_stopping_rounds": 5}, *(arrays_dmatrix(arrays, spec),) * 2)
    from app.model.trees import booster_bytes

    bundle = ModelBundle(
        spec=tree_spec(pre, {**hp, "rounds": 30}, result.booster),
        state_dict=None,
        booster=booster_bytes(result.booster),
        preprocessor=pre,
        features=["x", "c"],
        feature_service="model_v1",
        profile=reference_profile(frame, ["x"], ["c"]),
        metrics={"holdout": {"auc": 0.9}},
    )
    probe = pd.concat(
        [frame, pd.DataFrame({"x": [np.nan, 1.0], "c": [None, "never-seen"]})], ignore_index=True
    )
    return bundle, result.booster, probe


def test_tree_bundle_round_trip_scores_identically_in_float64(tmp_path):
    bundle, booster, frame = _tree_bundle()
    folder = bundle.save(tmp_path / "b")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["family"] == "gbdt" and manifest["format"] == "mlsys.bundle/2"
    assert (folder / TREES).read_bytes()[:1] == b"{"  # UBJSON, XGBoost's own format; no weights.pt
    assert not (folder / WEIGHTS).exists()
    loaded = ModelBundle.load(folder)
    assert loaded.family == "gbdt" and loaded.spec == bundle.spec
    before, after = (
        Predictor.from_bundle(bundle).predict_proba(frame),
        Predictor.from_bundle(loaded).predict_proba(frame),
    )
    assert after.dtype == np.float64 and np.all((after > 0) & (after < 1))
    np.testing.assert_array_equal(before, after)
    # The predictor scores exactly what the booster itself gives on the preprocessor's outputs.
    from app.model.trees import dmatrix, tree_inputs

    direct = booster.predict(dmatrix(tree_inputs(bundle.preprocessor.transform_batch(frame)), bundle.spec))
    np.testing.assert_allclose(after, direct, rtol=0, atol=1e-7)


def test_a_tampered_tree_file_is_refused(tmp_path):
    bundle, _, _ = _tree_bundle()
    folder = bundle.save(tmp_path / "b")
    raw = bytearray((folder / TREES).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / TREES).write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="checksum mismatch"):
        ModelBundle.load(folder)


def test_a_tree_file_swapped_with_forged_checksum_fails_clearly(tmp_path):
    """Another model's trees (or garbage) with a matching checksum: refused, never misread."""
    from app.model.bundle import _sha256

    bundle, _, _ = _tree_bundle()
    folder = bundle.save(tmp_path / "b")
    (folder / TREES).write_bytes(b"not a booster")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["sha256"][TREES] = _sha256(folder / TREES)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cannot load"):
        ModelBundle.load(folder)


def test_an_mlp_bundle_in_the_format_before_families_still_loads(tmp_path):
    """What the code before model families wrote: format /1, no "family" key."""
    bundle, frame = _bundle()
    folder = bundle.save(tmp_path / "b")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] == "mlsys.bundle/1" and manifest["family"] == "mlp"
    del manifest["family"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    loaded = ModelBundle.load(folder)
    assert loaded.family == "mlp" and loaded.booster is None
    np.testing.assert_array_equal(
        Predictor.from_bundle(bundle).predict_proba(frame), Predictor.from_bundle(loaded).predict_proba(frame)
    )


@pytest.mark.parametrize("family", ["mlp", "gbdt"])
def test_predictor_scores_every_family_in_float64(family):
    if family == "mlp":
        bundle, frame = _bundle()
    else:
        bundle, _, frame = _tree_bundle()
    predictor = Predictor.from_bundle(bundle, version=3)
    scores = predictor.predict_proba(frame)
    assert predictor.family == family and predictor.features == bundle.features
    assert scores.dtype == np.float64 and scores.shape == (len(frame),)
    assert np.all((scores >= 0) & (scores <= 1))
    assert predictor.predict_proba(frame.iloc[:0]).shape == (0,)


def test_an_unknown_family_is_refused(tmp_path):
    bundle, _ = _bundle()
    folder = bundle.save(tmp_path / "b")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["family"] = "catboost"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown model family 'catboost'"):
        ModelBundle.load(folder)


def test_a_tree_bundle_without_xgboost_names_what_to_install(tmp_path, monkeypatch):
    import builtins

    bundle, _, _ = _tree_bundle()
    folder = bundle.save(tmp_path / "b")
    real_import = builtins.__import__

    def no_xgboost(name, *args, **kwargs):
        if name == "xgboost" or name.startswith("xgboost."):
            raise ImportError("No module named 'xgboost'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xgboost)
    with pytest.raises(BundleError, match=r"pip install 'xgboost>=3'"):
        ModelBundle.load(folder)
