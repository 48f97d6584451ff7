"""ModelBundle: the only train -> serve contract.

A folder with the weights (a torch state_dict, loaded with `weights_only=True`), the
preprocessor (JSON), and `bundle.json`: model spec, feature list and Feast feature service,
the reference drift profile, metrics, lineage, and a SHA-256 of every file. Loading checks
the hashes first, so a corrupted or tampered bundle fails with a clear error and no file of it
is ever unpickled as code.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.files import atomic_path, atomic_write_text
from app.model.net import ModelSpec, TabularMLP
from app.model.preprocess import Preprocessor, PreprocessorError

FORMAT = "mlsys.bundle/1"
WEIGHTS, PREPROCESSOR, MANIFEST = "weights.pt", "preprocessor.json", "bundle.json"


class BundleError(ValueError):
    """A bundle that is missing, corrupted, tampered with or of an unknown format."""


@dataclass
class ModelBundle:
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    preprocessor: Preprocessor
    features: list[str]
    feature_service: str
    profile: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)

    def model(self) -> TabularMLP:
        net = TabularMLP(self.spec)
        net.load_state_dict(self.state_dict)
        return net.eval()

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / WEIGHTS) as tmp:
            torch.save(self.state_dict, tmp)
        atomic_write_text(folder / PREPROCESSOR, self.preprocessor.to_json())
        manifest = {
            "format": FORMAT,
            "spec": self.spec.to_dict(),
            "features": self.features,
            "feature_service": self.feature_service,
            "profile": self.profile,
            "metrics": self.metrics,
            "lineage": self.lineage,
            "sha256": {name: _sha256(folder / name) for name in (WEIGHTS, PREPROCESSOR)},
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
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BundleError(f"{folder}: unknown bundle format {manifest.get('format')!r}")
        for name in (WEIGHTS, PREPROCESSOR):
            path = folder / name
            if not path.is_file():
                raise BundleError(f"{folder}: {name} is missing")
            if _sha256(path) != manifest.get("sha256", {}).get(name):
                raise BundleError(f"{path}: checksum mismatch (corrupted or tampered); refusing to load")
        try:
            state = torch.load(folder / WEIGHTS, weights_only=True, map_location="cpu")
            pre = Preprocessor.from_json((folder / PREPROCESSOR).read_text())
            spec = ModelSpec.from_dict(manifest["spec"])
            bundle = cls(
                spec=spec,
                state_dict=state,
                preprocessor=pre,
                features=list(manifest["features"]),
                feature_service=str(manifest["feature_service"]),
                profile=manifest.get("profile", {}),
                metrics=manifest.get("metrics", {}),
                lineage=manifest.get("lineage", {}),
            )
            bundle.model()  # shapes must match the spec
        except (
            PreprocessorError,
            pickle.UnpicklingError,
            EOFError,
            KeyError,
            TypeError,
            ValueError,
            RuntimeError,
        ) as exc:
            raise BundleError(f"{folder}: cannot load ({str(exc).splitlines()[0]})") from None
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
