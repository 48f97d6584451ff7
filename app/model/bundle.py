"""ModelBundle: the only train -> serve contract, for every model family.

A folder with the model file, the preprocessor (JSON), and `bundle.json`: the family, its
model spec, feature list and Feast feature service, the reference drift profile, metrics,
lineage, and a SHA-256 of every file. The model file is the family's own safe format: an MLP's
torch state_dict (`weights.pt`, loaded with `weights_only=True`) or a tree booster in XGBoost's
UBJSON (`trees.ubj`). Loading checks the hashes first, so a corrupted or tampered bundle fails
with a clear error and no file of it is ever unpickled as code.

Formats: an MLP bundle is still written as "mlsys.bundle/1" (so readers from before families
existed load it); a tree bundle is "mlsys.bundle/2", which those readers refuse by name instead
of misreading. A "/1" bundle without a family is an MLP.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.errors import first_line
from app.files import atomic_path, atomic_write_text
from app.model import trees
from app.model.net import ModelSpec, TabularMLP
from app.model.preprocess import Preprocessor, PreprocessorError
from app.model.trees import TreeSpec

FORMAT = "mlsys.bundle/1"  # MLP bundles (and every bundle written before model families)
FORMAT_FAMILIES = "mlsys.bundle/2"  # bundles of the other families
WEIGHTS, TREES, PREPROCESSOR, MANIFEST = "weights.pt", "trees.ubj", "preprocessor.json", "bundle.json"
MODEL_FILE = {"mlp": WEIGHTS, trees.FAMILY: TREES}
FAMILIES = tuple(MODEL_FILE)
FAMILY_TAG = "mlsys.family"  # the MLflow tag naming a run's family (registered runs, search trials)


class BundleError(ValueError):
    """A bundle that is missing, corrupted, tampered with or of an unknown format."""


@dataclass
class ModelBundle:
    """`spec` decides the family: a `ModelSpec` with `state_dict` (mlp) or a `TreeSpec` with
    `booster`, the UBJSON bytes of the trees (gbdt)."""

    spec: ModelSpec | TreeSpec
    state_dict: dict[str, torch.Tensor] | None
    preprocessor: Preprocessor
    features: list[str]
    feature_service: str
    profile: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    booster: bytes | None = None

    @property
    def family(self) -> str:
        return trees.FAMILY if isinstance(self.spec, TreeSpec) else "mlp"

    def model(self):
        """The family's model, ready to score: a `TabularMLP` in eval mode, or an xgboost Booster."""
        if self.family == trees.FAMILY:
            if self.booster is None:
                raise ValueError("a tree bundle without its booster")
            expected = TreeSpec.for_preprocessor(self.preprocessor)
            if (self.spec.feature_names, self.spec.feature_types) != (
                expected.feature_names,
                expected.feature_types,
            ):
                raise ValueError("the trees' features do not match the preprocessor's outputs")
            return trees.load_booster(self.booster, self.spec)
        net = TabularMLP(self.spec)
        net.load_state_dict(self.state_dict)
        return net.eval()

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model_file = MODEL_FILE[self.family]
        with atomic_path(folder / model_file) as tmp:
            if self.family == trees.FAMILY:
                tmp.write_bytes(self.booster)
            else:
                torch.save(self.state_dict, tmp)
        atomic_write_text(folder / PREPROCESSOR, self.preprocessor.to_json())
        manifest = {
            "format": FORMAT if self.family == "mlp" else FORMAT_FAMILIES,
            "family": self.family,
            "spec": self.spec.to_dict(),
            "features": self.features,
            "feature_service": self.feature_service,
            "profile": self.profile,
            "metrics": self.metrics,
            "lineage": self.lineage,
            "sha256": {name: _sha256(folder / name) for name in (model_file, PREPROCESSOR)},
        }
        atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, default=_json_default))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ModelBundle:
        folder = Path(folder)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except FileNotFoundError:
            raise BundleError(f"{folder}: no {MANIFEST}; not a model bundle") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{folder / MANIFEST}: corrupted ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, FORMAT_FAMILIES):
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            raise BundleError(f"{folder}: unknown bundle format {fmt!r}")
        family = manifest.get("family", "mlp")
        if family not in FAMILIES:
            raise BundleError(f"{folder}: unknown model family {family!r} (known: {', '.join(FAMILIES)})")
        model_file = MODEL_FILE[family]
        for name in (model_file, PREPROCESSOR):
            path = folder / name
            if not path.is_file():
                raise BundleError(f"{folder}: {name} is missing")
            if _sha256(path) != manifest.get("sha256", {}).get(name):
                raise BundleError(f"{path}: checksum mismatch (corrupted or tampered); refusing to load")
        try:
            pre = Preprocessor.from_json((folder / PREPROCESSOR).read_text())
            if family == trees.FAMILY:
                state, booster = None, (folder / TREES).read_bytes()
                spec: ModelSpec | TreeSpec = TreeSpec.from_dict(manifest["spec"])
            else:
                state, booster = torch.load(folder / WEIGHTS, weights_only=True, map_location="cpu"), None
                spec = ModelSpec.from_dict(manifest["spec"])
            bundle = cls(
                spec=spec,
                state_dict=state,
                booster=booster,
                preprocessor=pre,
                features=list(manifest["features"]),
                feature_service=str(manifest["feature_service"]),
                profile=manifest.get("profile", {}),
                metrics=manifest.get("metrics", {}),
                lineage=manifest.get("lineage", {}),
            )
            bundle.model()  # shapes must match the spec
        except trees.MissingLibrary as exc:
            raise BundleError(f"{folder}: a {family} bundle; {exc}") from None
        except (
            PreprocessorError,
            pickle.UnpicklingError,
            EOFError,
            KeyError,
            TypeError,
            ValueError,
            RuntimeError,  # xgboost's XGBoostError is a ValueError
        ) as exc:
            raise BundleError(f"{folder}: cannot load ({first_line(exc)})") from None
        return bundle


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
