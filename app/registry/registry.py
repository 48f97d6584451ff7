"""The MLflow model registry: versions, the champion/challenger aliases, bundle load.

A local sqlite store under the storage root by default, a tracking server URI on a cluster
(`registry.tracking_uri`). Each version's artifacts are a `ModelBundle`; its metrics and
lineage are also run metrics/tags, and its model family a run param, a run tag and a version
tag, so the MLflow UI shows them. Champion changes are kept in a registered-model tag, so
`rollback` can go back more than one step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.config import AppConfig
from app.errors import first_line
from app.model.bundle import FAMILY_TAG, ModelBundle
from app.registry import ledger

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER, REJECTED = "champion", "challenger", "rejected"
HISTORY_TAG = "mlsys.champion_history"
EXPERIMENT = "mlsys"


class RegistryError(ValueError):
    """A registry request that cannot be satisfied (unknown version, nothing to roll back)."""


@dataclass(frozen=True)
class VersionInfo:
    version: int
    aliases: tuple[str, ...]
    run_id: str
    metrics: dict
    tags: dict
    family: str = "mlp"  # versions registered before model families are MLPs


SUMMARY_METRICS = ("holdout", "baseline_hgb", "training")  # slices/calibration live in bundle.json


def _flat_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if not prefix and k not in SUMMARY_METRICS:
            continue
        if isinstance(v, dict):
            out.update(_flat_metrics(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and v == v:  # skip NaN
            out[f"{prefix}{k}"] = float(v)
    return out


def learning_curve(history: list[dict]) -> list:
    """A training history as MLflow step metrics (`curve.train_loss`, `curve.val_loss`), one
    step per epoch or boosting round, so the MLflow UI draws the curve."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(f"curve.{k}", float(h[k]), now, int(h.get("epoch", h.get("round", i))))
        for i, h in enumerate(history)
        for k in ("train_loss", "val_loss")
        if k in h
    ]


class Registry:
    def __init__(self, cfg: AppConfig):
        import mlflow
        from mlflow import MlflowClient

        self.cfg = cfg
        self.name = cfg.registry.model_name
        self.uri = cfg.mlflow_uri
        cfg.storage.path().mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.uri)
        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=self.uri)

    def experiment_id(self) -> str:
        """The runs' experiment. A tracking server keeps its artifacts (`--serve-artifacts`: no
        node needs a shared disk or the store's credentials); the local store, the root's."""
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        local = None if self.cfg.registry.tracking_uri else self.cfg.storage.mlartifacts.as_uri()
        return self.client.create_experiment(EXPERIMENT, artifact_location=local)

    def register(
        self,
        bundle: ModelBundle,
        *,
        params: dict,
        alias: str | None,
        by: str = ledger.TRAINING,
        reason: str = "",
    ) -> int:
        """Log a run with the bundle as artifacts and register it as a new version."""
        from mlflow.exceptions import MlflowException

        with self.mlflow.start_run(experiment_id=self.experiment_id(), run_name="train") as run:
            self._log_candidate(run.info.run_id, bundle, params)
            with tempfile.TemporaryDirectory() as d:
                bundle.save(d)
                self.mlflow.log_artifacts(d, artifact_path="bundle")
        with contextlib.suppress(MlflowException):  # it already exists
            self.client.create_registered_model(self.name)
        mv = self.client.create_model_version(
            self.name,
            source=f"{run.info.artifact_uri}/bundle",
            run_id=run.info.run_id,
            tags={
                "holdout_auc": str(bundle.metrics.get("holdout", {}).get("auc")),
                "family": bundle.family,
            },
        )
        version = int(mv.version)
        if alias == CHAMPION:
            self.promote(version, by=by, reason=reason or "registered as champion")
        elif alias:
            self.set_alias(alias, version, by=by, reason=reason or f"registered as {alias}")
        if alias == REJECTED:
            try:  # the version is registered whatever happens to older refusals
                self.prune_rejected()
            except Exception as exc:
                log.warning("could not delete older rejected versions: %s", first_line(exc))
        return version

    def record_refused(self, bundle: ModelBundle, *, params: dict, reason: str) -> str:
        """A candidate the gate refused, as a run without a model version: its settings, metrics,
        learning curve and the gate's reason (tags `gate.passed`, `gate.reason`)."""
        with self.mlflow.start_run(experiment_id=self.experiment_id(), run_name="refused") as run:
            self._log_candidate(run.info.run_id, bundle, params)
            self.mlflow.set_tags({"gate.passed": "false", "gate.reason": reason[:5000]})
        return run.info.run_id

    def _log_candidate(self, run_id: str, bundle: ModelBundle, params: dict) -> None:
        """Params, summary metrics, lineage tags and the per-epoch (or per-round) learning curve."""
        self.mlflow.log_params({k: str(v)[:500] for k, v in {**params, "family": bundle.family}.items()})
        self.mlflow.log_metrics(_flat_metrics(bundle.metrics))
        self.mlflow.set_tags(
            {FAMILY_TAG: bundle.family, **{f"lineage.{k}": str(v) for k, v in bundle.lineage.items()}}
        )
        curve = learning_curve(bundle.metrics.get("training", {}).get("history", []))
        for start in range(0, len(curve), 1000):  # MLflow takes at most 1,000 metrics per batch
            self.client.log_batch(run_id, metrics=curve[start : start + 1000])

    def prune_rejected(self) -> list[int]:
        """Delete the rejected versions that never served beyond the newest
        `registry.keep_rejected` (retention.py); returns the versions deleted."""
        from app.registry.retention import prune_rejected

        return prune_rejected(self, keep=self.cfg.registry.keep_rejected, rejected_alias=REJECTED)

    def set_alias(self, alias: str, version: int, *, by: str, reason: str = "", evidence=None) -> None:
        """Point `alias` (not the champion: see `promote`) at `version`, with its ledger entry."""
        previous = self.alias_version(alias)
        self.client.set_registered_model_alias(self.name, alias, str(version))
        if alias == REJECTED and self.alias_version(CHALLENGER) == version:
            self.client.delete_registered_model_alias(self.name, CHALLENGER)
        event = ledger.REJECT if alias == REJECTED else f"set {alias}"
        self.record(
            ledger.entry(
                event,
                by=by,
                version=version,
                from_version=previous,
                alias=alias,
                reason=reason,
                evidence=evidence or {},
            )
        )

    def record(self, entry: ledger.Entry) -> None:
        """Add an entry to the promotion ledger (a tag on its version)."""
        self.client.set_model_version_tag(self.name, str(entry.version), *entry.tag())

    def promotion_ledger(self) -> list[ledger.Entry]:
        """Every ledger entry of every version, oldest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except MlflowException:
            return []
        return sorted((e for mv in found for e in ledger.parse(mv.tags)), key=lambda e: e.at)

    def alias_version(self, alias: str) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException:
            return None

    def load(self, ref: str | int = CHAMPION) -> ModelBundle:
        """A bundle by alias ("champion", "challenger") or version number."""
        from mlflow.exceptions import MlflowException

        try:
            mv = (
                self.client.get_model_version(self.name, str(ref))
                if str(ref).isdigit()
                else self.client.get_model_version_by_alias(self.name, str(ref))
            )
        except MlflowException:
            raise RegistryError(f"model {self.name!r} has no version or alias {ref!r}") from None
        dest = self.cfg.storage.bundles / f"v{mv.version}"
        if not (dest / "bundle" / "bundle.json").exists():
            # Several serving replicas may load at once: each downloads into its own folder,
            # and the first rename wins, so nobody reads a half-written bundle.
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".v{mv.version}-", dir=dest.parent))
            self.mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(tmp))
            try:
                os.rename(tmp, dest)
            except OSError:  # another process got there first (or a stale, empty folder)
                shutil.rmtree(tmp, ignore_errors=True)
                if not (dest / "bundle" / "bundle.json").exists():
                    shutil.rmtree(dest, ignore_errors=True)
                    return self.load(ref)
        return ModelBundle.load(dest / "bundle")

    def versions(self) -> list[VersionInfo]:
        from mlflow.exceptions import MlflowException

        # search_model_versions leaves `aliases` empty; the registered model holds the mapping.
        try:
            by_alias = self.client.get_registered_model(self.name).aliases
        except MlflowException:
            return []  # nothing registered yet
        out = []
        for mv in self.client.search_model_versions(f"name='{self.name}'"):
            run = self.client.get_run(mv.run_id)
            out.append(
                VersionInfo(
                    version=int(mv.version),
                    aliases=tuple(sorted(a for a, v in by_alias.items() if int(v) == int(mv.version))),
                    run_id=mv.run_id,
                    metrics=dict(run.data.metrics),
                    tags={k: v for k, v in run.data.tags.items() if k.startswith("lineage.")},
                    family=mv.tags.get("family") or run.data.tags.get(FAMILY_TAG) or "mlp",
                )
            )
        return sorted(out, key=lambda v: v.version)

    def _history(self) -> list[int]:
        tags = self.client.get_registered_model(self.name).tags
        return json.loads(tags.get(HISTORY_TAG, "[]"))

    def promote(
        self, version: int, *, by: str = ledger.CLI, reason: str = "promoted", evidence: dict | None = None
    ) -> None:
        """Make `version` the champion; the previous champion is remembered for rollback."""
        if version not in {v.version for v in self.versions()}:
            raise RegistryError(f"model {self.name!r} has no version {version}")
        previous = self.alias_version(CHAMPION)
        history = self._history()
        if not history or history[-1] != version:
            history.append(version)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.client.set_registered_model_alias(self.name, CHAMPION, str(version))
        if self.alias_version(CHALLENGER) == version:
            self.client.delete_registered_model_alias(self.name, CHALLENGER)
        self.record(
            ledger.entry(
                "promote",
                by=by,
                version=version,
                from_version=previous,
                alias=CHAMPION,
                reason=reason,
                evidence=evidence or {},
            )
        )

    def rollback(self, *, by: str = ledger.CLI, reason: str = "rolled back") -> int:
        """Point the champion back at the previous champion; returns that version."""
        history = self._history()
        if len(history) < 2:
            raise RegistryError("no earlier champion to roll back to")
        replaced = history.pop()
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.client.set_registered_model_alias(self.name, CHAMPION, str(history[-1]))
        self.record(
            ledger.entry(
                "rollback", by=by, version=history[-1], from_version=replaced, alias=CHAMPION, reason=reason
            )
        )
        return history[-1]
