import json

import numpy as np
import pandas as pd
import pytest
import torch

from app.model.bundle import MANIFEST, PREPROCESSOR, WEIGHTS, BundleError, ModelBundle
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
        Predictor.from_bundle(bundle).score(frame), Predictor.from_bundle(loaded).score(frame)
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
