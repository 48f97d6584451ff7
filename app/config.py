"""AppConfig: the typed, frozen configuration, loaded once at the edge (CLI, build_app).

The `dataset` section is the only place column names live. Every problem found at load time
becomes one `ConfigError` line that names the offending key, so a user's mistake never
surfaces as a crash deep inside Feast or torch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import keyword
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.errors import first_line

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("deployments/config/local.yaml")
ENV_PREFIX = "MLSYS_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TIME_FEATURES = ("hour", "day_of_week", "day_of_month", "month", "is_weekend")
# The feature table's own time column; app.features.transforms.FEATURE_TIMESTAMP (a test pins them equal).
FEATURE_TIMESTAMP = "feature_timestamp"
# Columns the system adds to the data's own on the way: a dataset column must not share a name.
QUARANTINE_REASON, RAW_ROW, DATE_PART, JOIN_BUCKET = "_reason", "_raw", "_part", "_bucket"
INTERNAL_COLUMNS = {
    QUARANTINE_REASON: "ETL's quarantine reason",
    RAW_ROW: "ETL's copy of a quarantined row",
    DATE_PART: "ETL's date partition",
    JOIN_BUCKET: "the point-in-time join's hash bucket",
}
# Columns the feature table adds itself; a dataset column with one of these names would clash.
RESERVED_NAMES = frozenset({"event_timestamp", FEATURE_TIMESTAMP, "created", "date"})


class ConfigError(ValueError):
    """A configuration problem, phrased as `key: reason` lines for the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(key: str, name: str) -> None:
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ValueError(
            f"{key}: {name!r} cannot be a feature name (letters, digits and '_' only, not "
            f"starting with a digit); map it with dataset.rename, e.g. {{{name!r}: "
            f"{re.sub(r'[^A-Za-z0-9_]', '_', name)!r}}}"
        )


class Rule(_Section):
    """Validation rule for one column; a row breaking it is quarantined with the reason."""

    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    required: bool = False  # null values are quarantined


class DatasetConfig(_Section):
    source: str = "data/raw/"
    entity: str = "user_id"
    entity_type: Literal["int64", "string"] = "int64"
    timestamp: str = "event_timestamp"
    label: str = "label"
    # Maps raw label values to 1/0 when the label is not already 0/1 (e.g. {">50K": 1, "<=50K": 0}).
    label_map: dict[str, int] | None = None
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    rules: dict[str, Rule] = Field(default_factory=dict)
    # Raw column name -> clean name, applied when reading; the rest of the config uses clean names.
    rename: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> DatasetConfig:
        for i, name in enumerate(self.numeric):
            _check_name(f"dataset.numeric.{i}", name)
        for i, name in enumerate(self.categorical):
            _check_name(f"dataset.categorical.{i}", name)
        for key in ("entity", "timestamp", "label"):
            _check_name(f"dataset.{key}", getattr(self, key))
        for raw, clean in self.rename.items():
            _check_name(f"dataset.rename.{raw}", clean)
        if not self.numeric and not self.categorical:
            raise ValueError("dataset: list at least one feature in numeric or categorical")
        features = self.numeric + self.categorical
        dupes = sorted({n for n in features if features.count(n) > 1})
        if dupes:
            raise ValueError(f"dataset: {dupes} listed more than once in numeric/categorical")
        for key in ("entity", "timestamp", "label"):
            if getattr(self, key) in features:
                raise ValueError(
                    f"dataset.{key}: {getattr(self, key)!r} is also listed as a feature; "
                    "the entity, timestamp and label cannot be model inputs"
                )
        if len({self.entity, self.timestamp, self.label}) < 3:
            raise ValueError("dataset: entity, timestamp and label must be three different columns")
        clash = sorted(set(features) & RESERVED_NAMES - {self.timestamp})
        if clash:
            raise ValueError(f"dataset: {clash} are reserved names; rename them")
        for col in self.rules:
            if col not in self.columns:
                raise ValueError(f"dataset.rules.{col}: not a column of the dataset {self.columns}")
        if self.label_map is not None and sorted(set(self.label_map.values())) != [0, 1]:
            raise ValueError("dataset.label_map: values must map to both 0 and 1")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def columns(self) -> list[str]:
        return [self.entity, self.timestamp, self.label, *self.features]


class OnlineStoreConfig(_Section):
    type: Literal["sqlite", "redis"] = "sqlite"
    connection_string: str = "localhost:6379"  # only for redis


class FeaturesConfig(_Section):
    project: str = "mlsys"
    time: list[str] = Field(default_factory=lambda: ["day_of_week", "month", "hour"])
    # Numeric column -> bucket edges; makes `<column>_bucket`, usable in crosses.
    buckets: dict[str, list[float]] = Field(default_factory=dict)
    crosses: list[list[str]] = Field(default_factory=list)
    ttl_days: float = Field(default=30, gt=0)
    service_version: int = Field(default=1, ge=1)
    online: OnlineStoreConfig = OnlineStoreConfig()
    # Point-in-time join for training sets. "mlsys": hash-partitioned merge_asof on Ray, with
    # the TTL (default). "feast": Feast's Ray offline store, which ignores the TTL (applied
    # after it), scans row by row, and above broadcast_join_threshold_mb misses history;
    # see README "Limits".
    historical_engine: Literal["mlsys", "feast"] = "mlsys"
    broadcast_join_threshold_mb: int = Field(default=100, ge=1)  # Feast reads 0 as 100
    # How `features materialize` fills the online store. "mlsys": the latest row per entity,
    # read partition by partition, written with Feast's own online-write API and recorded in
    # the Feast registry as a materialization (seconds at small sizes). "feast": Feast's Ray
    # compute engine (`FeatureStore.materialize`), which pays Ray's fixed costs.
    materialize_engine: Literal["mlsys", "feast"] = "mlsys"

    @model_validator(mode="after")
    def _check(self) -> FeaturesConfig:
        for i, name in enumerate(self.time):
            if name not in TIME_FEATURES:
                raise ValueError(f"features.time.{i}: {name!r} is not one of {list(TIME_FEATURES)}")
            if name in self.time[:i]:
                raise ValueError(f"features.time.{i}: {name!r} is listed more than once")
        for col, edges in self.buckets.items():
            if len(edges) < 1 or sorted(edges) != list(edges):
                raise ValueError(f"features.buckets.{col}: edges must be a sorted, non-empty list")
        for i, cross in enumerate(self.crosses):
            if len(cross) < 2:
                raise ValueError(f"features.crosses.{i}: a cross needs at least two columns")
            if len(set(cross)) < len(cross):
                raise ValueError(f"features.crosses.{i}: a column appears more than once in {cross}")
        # Two derived features with one name would be two columns with one name in a batch.
        made_by: dict[str, str] = {}
        for name, key, _ in self.derived():
            if name in made_by:
                raise ValueError(f"{key}: derived feature {name!r} is already made by {made_by[name]}")
            made_by[name] = key
        _check_name("features.project", self.project)
        return self

    def derived(self) -> list[tuple[str, str, str]]:
        """(column name, config key, how to drop it) of every derived feature, named exactly as
        app.features.transforms names them: time parts, `<col>_bucket`, crosses `a_x_b`."""
        return [
            *((name, "features.time", f"drop {name!r} from features.time") for name in self.time),
            *(
                (f"{col}_bucket", f"features.buckets.{col}", f"drop {col!r} from features.buckets")
                for col in self.buckets
            ),
            *(
                ("_x_".join(cross), f"features.crosses.{i}", f"drop features.crosses.{i}")
                for i, cross in enumerate(self.crosses)
            ),
        ]


# Set by Ray in the environment of a Ray Job's entrypoint.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


class StorageConfig(_Section):
    """Where everything lives: under `root`, or the shared part on the object store of
    `catalog` and `state`. The one place the layout is spelled."""

    root: str = Field(default=".mlsys", validate_default=True)  # the default is resolved too
    # The Iceberg tables' catalog, as pyiceberg's catalog properties: e.g. {type: rest, uri:
    # http://catalog:8181, warehouse: s3://tables/} or {type: sql, uri: postgresql://...}.
    # Empty: a sqlite catalog under root, the tables under root (README, Storage).
    catalog: dict[str, str] = Field(default_factory=dict)
    # What every node shares besides the tables: the small state (experiment split, rollout and
    # retrain state, feedback key, producers' token digests, the monitor's reloaded settings,
    # reports, Feast's registry; written with conditional puts) and the data files (feature
    # table, traffic log, training checkpoints, ETL's staging and quarantine). "" keeps them
    # under root; "s3://bucket/prefix" puts them on an object store (the endpoint and
    # credentials of `catalog`, else AWS_*), and root then holds only this node's caches.
    state: str = ""

    @field_validator("state")
    @classmethod
    def _state_uri(cls, state: str) -> str:
        if state and not (state.startswith("s3://") and len(state) > len("s3://")):
            raise ValueError(f"must be empty (under root) or an s3://bucket/prefix URI, not {state!r}")
        return state.rstrip("/")

    @field_validator("root")
    @classmethod
    def _absolute(cls, root: str) -> str:
        """Resolved once, where the config loads, so every Ray worker uses the same folder. A
        relative root in a Ray Job goes under the home folder: the job's working directory is
        Ray's temporary copy of `--working-dir`, gone with the job."""
        if "://" in root:
            raise ValueError(
                f"must be a folder, not {root!r}: an object store holds the tables "
                "(storage.catalog) and the shared state (storage.state)"
            )
        path = Path(root).expanduser()
        if not path.is_absolute() and RAY_JOB_ENV in os.environ:
            path = Path.home() / path
        return str(path.absolute())

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)

    # Data
    @property
    def raw(self) -> Path:  # the demo's generated data set
        return self.path("raw")

    @property
    def warehouse(self) -> Path:  # the Iceberg table's location (data/ and metadata/)
        return self.path("warehouse")

    # Shared data files: keys under the shared files' store (`state`; under root by default)
    @property
    def features(self) -> str:  # the feature table, Feast's offline source: one file a day
        return "features"

    @property
    def staging(self) -> str:  # ETL's staged rows, the point-in-time join's buckets: one folder a run
        return "staging"

    @property
    def quarantine(self) -> str:  # rows ETL refused, one folder a run
        return "quarantine"

    @property
    def outcome_quarantine(self) -> str:  # outcome rows `mlsys outcomes load` refused
        return "quarantine/outcomes"

    @property
    def checkpoints(self) -> str:  # Ray Train's and Tune's runs: what a restarted worker resumes from
        return "checkpoints"

    @property
    def production(self) -> Path:  # served rows joined to their outcomes, for training
        return self.path("production")

    @property
    def feast(self) -> Path:
        return self.path("feast")

    @property
    def reports(self) -> str:  # a key prefix of the state store: run reports, the search's verdict
        return "reports"

    @property
    def demo_page(self) -> Path:  # the demo's HTML report, for a browser on this machine
        return self.path("report.html")

    # Models
    @property
    def mlflow_db(self) -> Path:  # the registry's sqlite store, unless registry.tracking_uri is set
        return self.path("mlflow.db")

    @property
    def mlartifacts(self) -> Path:
        return self.path("mlartifacts")

    @property
    def bundles(self) -> Path:  # registry bundles downloaded for loading, one folder per version
        return self.path("bundles")

    # Serving and monitoring state
    @property
    def traffic(self) -> str:  # the monitor's log: a key of the shared data files, like `features`
        return "traffic"

    @property
    def wal(self) -> Path:  # what the monitor accepted since its last flush: on its own node's disk
        return self.path("traffic", "wal")

    @property
    def monitoring(self) -> Path:
        return self.path("monitoring")

    # Shared state: keys of the state store (`state`; under root by default), not paths
    @property
    def retrain_state(self) -> str:
        return "monitoring/retrain.json"

    @property
    def monitor_overrides(self) -> str:  # `mlsys monitor reload`'s sections, kept across restarts
        return "monitoring/monitor-config.json"

    @property
    def online_state(self) -> str:  # the newest prediction time online learning has used
        return "monitoring/online.json"

    @property
    def experiment_state(self) -> str:
        return "serving/experiment.json"

    @property
    def feedback_key(self) -> str:
        return "serving/feedback.key"

    @property
    def producers(self) -> str:
        return "serving/producers.json"

    @property
    def rollout_state(self) -> str:
        return "serving/rollout.json"

    @property
    def feast_registry(self) -> str:  # where Feast's own file registry kept it, under the root
        return "feast/registry.db"

    @property
    def archive(self) -> Path:  # earlier demo runs' traffic and monitoring state
        return self.path("archive")


class RayConfig(_Section):
    address: str | None = None  # None: RAY_ADDRESS if set, else start a local cluster
    # Logical CPUs of a local cluster: Ray schedules by logical CPUs, and a Tune trial + two
    # Train workers + Serve replicas exceed 2 on a 2-core laptop and would wait forever.
    num_cpus: int = Field(default=8, ge=1)
    include_dashboard: bool = True
    dashboard_host: str = "127.0.0.1"  # never exposed beyond this machine unless configured
    dashboard_port: int = 8265
    # Ray Serve's HTTP ingress on a cluster this process starts: "haproxy" (Ray's HAProxy with
    # the throughput-optimised settings; about 10x the default proxy's req/s here, see README)
    # or "default" (Ray's Python proxy). A `ray start` cluster takes the env vars it was started with.
    serve_proxy: Literal["haproxy", "default"] = "haproxy"


class MlpConfig(_Section):
    """The torch MLP (`model.family: mlp`), trained data-parallel (DDP) on Ray Train."""

    num_workers: int = Field(default=2, ge=1)  # Ray Train workers of an MLP run
    use_gpu: bool = False
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=512, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    width: int = Field(default=64, ge=1)
    depth: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    patience: int = Field(default=3, ge=1)  # epochs without a better validation loss before stopping
    # Each worker's shard handed over in memory through the object store; false: streamed
    # from a Ray Dataset every epoch, for shards larger than a worker's memory.
    cache_shards: bool = True


class ModelConfig(_Section):
    """Which model family `mlsys train` fits, and the settings every family's run shares.

    `gbdt` (the default): XGBoost trees, boosted in process on a small training set and
    data-parallel on Ray Train on a large one (settings in `gbdt`); `mlp`: the torch MLP
    (settings in `mlp`); `auto`: the family whose best search trial has the lower validation
    log loss (`mlsys tune`, or a search run first when there is none)."""

    # Trees by default: on tabular data they match a default gradient-boosted baseline where the
    # MLP trails it (benchmarks/default_family.py, docs/performance.md).
    family: Literal["mlp", "gbdt", "auto"] = "gbdt"
    # The split is shared, not per family: the families (and `auto`'s verdict) compare on the
    # same validation rows, and the gate scores every candidate on the same holdout. The most
    # recent slice is the holdout, the one before it validation: no future leaks into training.
    valid_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    holdout_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    # Per split, checked on the split before a family is chosen; fewer is refused before any
    # worker starts.
    min_rows: int = Field(default=200, ge=10)
    # Rows of each class per split, checked with min_rows: fewer, and the rare class is too thin
    # to learn from or to measure a holdout AUC on.
    min_class_rows: int = Field(default=10, ge=1)
    # Worker failures a run survives (resumes from its checkpoint); every family's Ray Train
    # run shares one run configuration.
    max_failures: int = Field(default=2, ge=0)


class GbdtConfig(_Section):
    """XGBoost's gradient-boosted trees (`model.family: gbdt`): boosted in the driver process
    below `in_process_rows` training rows, trained data-parallel on Ray Train above it."""

    # Training rows below which the trees are boosted in the driver process (same parameters,
    # early stopping and preprocessing) instead of on Ray Train, whose fixed cost (40-50 s on
    # two cores) dwarfs the boosting: in process was 13x faster even at 210k training rows
    # (benchmarks/gbdt_paths.py; docs/performance.md, "Gradient-boosted trees: in process or on
    # Ray Train"). Above it the driver would hold the whole matrix. 0: always Ray Train.
    in_process_rows: int = Field(default=500_000, ge=0)
    num_workers: int = Field(default=2, ge=1)  # Ray Train workers of a gbdt run
    cpus_per_worker: int = Field(default=1, ge=1)  # xgboost threads per worker (in process: threads)
    use_gpu: bool = False  # refused before any worker starts when the cluster has no GPU
    # Shallower trees, a smaller step and more patience than XGBoost's own defaults: on a small
    # or noisy set (a rare class) the validation loss bottoms out early and noisily, and depth 6
    # at 0.1 with 20 rounds of patience stopped after 11 trees, 0.034 AUC under a default
    # HistGradientBoosting (benchmarks/default_family.py, docs/performance.md).
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    max_depth: int = Field(default=4, ge=1, le=16)
    rounds: int = Field(default=1000, ge=1)  # the most boosting rounds; early stopping ends sooner
    early_stopping_rounds: int = Field(default=50, ge=1)  # rounds without a better validation loss
    reg_lambda: float = Field(default=1.0, ge=0)  # L2 penalty on leaf weights
    min_child_weight: float = Field(default=1.0, ge=0)


class TuneConfig(_Section):
    num_samples: int = Field(default=8, ge=1)
    max_concurrent: int = Field(default=1, ge=1)
    scheduler: Literal["asha", "fifo"] = "asha"
    in_pipeline: bool = False  # search before the final training run in `mlsys pipeline`


class ExperimentConfig(_Section):
    name: str = "exp-1"
    # Variant name -> share of traffic. A variant name is a registry alias (champion, challenger, ...).
    split: dict[str, Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(
        default_factory=lambda: {"champion": 0.9, "challenger": 0.1}
    )
    shadow: str | None = None  # an alias scored on a copy of the traffic, never returned
    shadow_fraction: float = Field(default=1.0, ge=0, le=1)
    control: str = "champion"  # what the other variants are compared with
    metric: Literal["accuracy", "conversion"] = "accuracy"
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    mde: float = Field(default=0.05, gt=0)  # smallest relative change worth detecting
    power: float = Field(default=0.8, gt=0.5, lt=1)

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if not self.split:
            raise ValueError("serve.experiment.split: name at least one variant")
        if any(v < 0 for v in self.split.values()) or abs(sum(self.split.values()) - 1) > 1e-6:
            raise ValueError("serve.experiment.split: shares must be >= 0 and sum to 1")
        for name in [*self.split, *([self.shadow] if self.shadow else [])]:
            _check_name("serve.experiment.split", name)
        if self.shadow in self.split:
            raise ValueError(f"serve.experiment.shadow: {self.shadow!r} is already in the split")
        return self

    @property
    def aliases(self) -> list[str]:
        """Every registry alias the experiment serves: the split's variants and the shadow."""
        return [*self.split, *([self.shadow] if self.shadow else [])]


class AutoscalingConfig(_Section):
    """Serve autoscaling for a CPU replica: a tabular model scores a batch in ~1 ms, so a
    replica keeps up with a few dozen requests in flight before another one pays off."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=16, gt=0)
    # Serve's own defaults: a burst must last 30 s before a replica is added, and a replica stays
    # 10 minutes after its load is gone (starting one costs seconds of model loading).
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)
    look_back_period_s: float = Field(default=30.0, gt=0)  # ongoing requests averaged over this


class ServeConfig(_Section):
    experiment: ExperimentConfig = ExperimentConfig()
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    # The Open Inference Protocol over gRPC (Triton's and KServe's clients), beside HTTP on the
    # same host; 0 turns it off.
    grpc_port: int = Field(default=9000, ge=0, le=65535)
    # "ingress": the variants' models live in the ingress replica (one hop; right for small CPU
    # models); "deployment": one model deployment per variant (for GPU or large models).
    placement: Literal["ingress", "deployment"] = "ingress"
    use_gpu: bool = False  # model deployments ask for a GPU each (placement: deployment)
    ingress: AutoscalingConfig = AutoscalingConfig()
    models: AutoscalingConfig = AutoscalingConfig()
    max_batch_size: int = Field(default=64, ge=1)
    # 0: a batch is what queued while the previous one was scored, so a lone request is not
    # held back (2 ms of a ~2.5 ms answer) and batches still grow with load.
    batch_wait_timeout_s: float = Field(default=0.0, ge=0)
    max_instances: int = Field(default=10_000, ge=1)  # rows in one batch request
    # Rows one request may ask to explain: the MLP's integrated gradients cost ~64 forward passes
    # per row, so an open route must not let one caller hold a replica for seconds.
    max_explain_rows: int = Field(default=100, ge=1)
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    # Longest categorical string (and v2 BYTES element) accepted: traffic records and drift
    # windows keep these values, so an unbounded one is unbounded memory.
    max_string_length: int = Field(default=256, ge=1)
    threshold: float = Field(default=0.5, gt=0, lt=1)  # score -> label
    unknown_entity: Literal["error", "impute"] = "error"  # 404, or score with missing features
    # Replicas keep online feature rows this long (0: read Feast for every batch); cleared
    # at once when a materialization changes the Feast registry (serving/feature_cache.py).
    online_cache_seconds: float = Field(default=5.0, ge=0)
    online_cache_entries: int = Field(default=100_000, ge=1)
    # Admin routes need `Authorization: Bearer $MLSYS_ADMIN_TOKEN`; with no token set they are
    # refused, unless this is turned off for local use.
    admin_auth: bool = True
    # Outcomes steer the rollout, online learning and retraining, so /feedback takes them only
    # from a named producer's token (`mlsys outcomes producer add NAME`; serving/producers.py),
    # never from whoever got a prediction. Off: anyone may post outcomes (local experiments only).
    outcomes_auth: bool = True
    # /predict returns a receipt (an HMAC of the request id) that /feedback must echo: a
    # binding check that the outcome is for a prediction this service made (serving/receipts.py).
    feedback_auth: bool = True
    poll_interval_s: float = Field(default=1.0, gt=0)  # replicas check for promotions this often


class RegistryConfig(_Section):
    tracking_uri: str | None = None  # None: sqlite under storage.root; a server URI on a cluster
    model_name: str = "mlsys-model"
    gate_metric: Literal["auc", "log_loss", "brier"] = "auc"
    # A challenger is registered only if it is not worse than the champion by more than this.
    gate_margin: float = Field(default=0.005, ge=0)
    # Versions registered as rejected (a gate's refusal; never served) beyond the newest this
    # many are deleted with their artifacts: online learning registers one per failed update.
    keep_rejected: int = Field(default=20, ge=0)


class OutcomesConfig(_Section):
    """Outcomes loaded from files (`mlsys outcomes load`): how late an outcome may still arrive."""

    # An outcome is taken up to this many days after its prediction was logged; a later one is
    # quarantined. Predictions are kept `monitor.retention_days`: a longer window ends there.
    late_days: float = Field(default=7, gt=0)


class MonitorConfig(_Section):
    window: int = Field(default=5000, ge=1)
    # Features whose live distribution moves with the calendar by design: the month of live
    # traffic is always later than the training data's, so it would "drift" every day.
    ignore_features: list[str] = Field(default_factory=lambda: ["month"])
    # Calendar features (features.time) describe when traffic arrives, not what it is: a
    # window of minutes holds one hour of the day, so stationary traffic would "drift" on
    # `hour`. They are shown in every report but raise no alert unless this is on.
    alert_on_calendar: bool = False
    # The alert thresholds (deployments/prometheus/alerts.yml is generated from them).
    psi_alert: float = Field(default=0.2, gt=0)
    p99_ms_alert: float = Field(default=100, gt=0)
    error_rate_alert: float = Field(default=0.01, gt=0, lt=1)
    qps_drop_alert: float = Field(default=0.2, gt=0, lt=1)
    # The traffic log is kept this long (hourly partitions past it are deleted); the counts
    # live on in the monitor's snapshot. 30 days covers a monthly review of an experiment.
    retention_days: float = Field(default=30, gt=0)
    # How often the monitor snapshots its counts and compacts closed hours: a restart reads
    # the snapshot plus at most this much newer traffic.
    snapshot_minutes: float = Field(default=5, gt=0)
    # Predictions remembered by request id to join late feedback (~300 bytes each, measured).
    remembered_predictions: int = Field(default=200_000, ge=1)
    # Feedback waiting for a prediction not seen yet; beyond this the oldest is dropped and counted.
    pending_feedback: int = Field(default=100_000, ge=0)
    # Labelled performance (performance.py): a variant's outcomes are judged in windows of this
    # many. A decayed window (AUC under its band) alerts, and retrains when it persists.
    performance_window: int = Field(default=500, ge=20)
    # What a window is judged by. `learned`: bands from the reference period's chunk-to-chunk
    # variation (bands.py), where the model's training run saved enough chunks of the current
    # window size; `fixed`: PSI over `psi_alert`, AUC more than `auc_drop` under the version's
    # holdout AUC. PSI stays fixed by default: traffic that repeats few users in a window moves
    # more than the reference's chunks do (benchmarks/bands.py measures both).
    psi_band: Literal["learned", "fixed"] = "fixed"
    performance_band: Literal["learned", "fixed"] = "learned"
    auc_drop: float = Field(default=0.05, gt=0, lt=1)


class RolloutConfig(_Section):
    """The automatic canary rollout of a new challenger (serving/rollout_controller.py; decisions:
    monitoring/rollout.py).

    A challenger enters at `steps[0]` percent of the traffic and moves up a step after
    `min_outcomes` labelled outcomes and `min_minutes` at its step while the guardrails hold;
    at the last step it is promoted when better (or no worse than `margin`, if set), and any
    breach rolls it back. `manual` leaves the split to operators."""

    mode: Literal["auto", "manual"] = "auto"
    steps: list[Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [5.0, 25.0, 50.0, 100.0]
    )
    min_outcomes: int = Field(default=200, ge=1)
    min_minutes: float = Field(default=5.0, ge=0)
    latency_slack: float = Field(default=0.2, ge=0)  # challenger p99 <= control p99 x (1 + slack)
    error_slack: float = Field(default=0.01, ge=0, le=1)  # challenger error rate <= control's + slack
    min_requests: int = Field(default=100, ge=1)  # latency and errors are judged after this many
    margin: float | None = Field(default=None, ge=0, le=1)  # promote when no worse than this
    check_seconds: float = Field(default=10.0, gt=0)
    # Score a new challenger in shadow first (a copy of the traffic, never answered) for
    # `min_requests` paired predictions and `min_minutes`, then give it its first share.
    shadow_first: bool = False
    # With shadow_first: also wait for this many outcomes of the shadow copy before its first
    # live share, so that a harmful challenger is judged on outcomes before it answers anyone
    # (the power analysis's sample size for `serve.experiment.mde` catches a drop of that size;
    # benchmarks/rollout.py). 0: the schedule alone (min_requests, min_minutes).
    shadow_min_outcomes: int = Field(default=0, ge=0)
    # No client key (the assignment key) adds more than this many outcomes to a variant's model
    # version: one caller cannot outvote the rest. None: no cap.
    max_outcomes_per_key: int | None = Field(default=20, ge=1)
    # With outcomes from more than one producer, none counts for more than this share of an
    # arm's outcomes (a lone producer is never capped). At least one half, so two producers
    # can always both count in full when they report alike.
    max_producer_share: float = Field(default=0.8, ge=0.5, le=1)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if not steps:
            raise ValueError("name at least one step (percent of traffic)")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must increase: {steps}")
        return steps


_PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}
_EVERY = re.compile(r"^every\s+(\d+)\s*([mhd])$")


class RetrainConfig(_Section):
    schedule: str = "daily"  # hourly | daily | weekly | every N[m|h|d] | none
    on_drift: bool = True
    # Retrain when the champion's labelled performance decays (concept drift: the inputs may
    # look the same), with the same persistence as drift (drift_windows, drift_minutes).
    on_decay: bool = True
    cooldown_minutes: float = Field(default=60, ge=0)
    min_samples: int = Field(default=1000, ge=1)  # a drift incident needs a window this large
    # Drift retrains only when it persists: this many consecutive complete windows over the
    # alert level, the first at least `drift_minutes` before the last. One burst of shifted
    # requests, which any caller can send, never starts a job.
    drift_windows: int = Field(default=2, ge=1)
    drift_minutes: float = Field(default=10, ge=0)
    max_per_day: int = Field(default=4, ge=0)  # retrain jobs submitted in any 24 hours, at most
    jobs_address: str = "http://127.0.0.1:8265"  # the cluster's Jobs API (its dashboard)
    # What a training run (`mlsys pipeline`, the retrain job it is, `mlsys train`) learns from:
    # `warehouse` (the labelled rows ETL loaded), `production` (served rows joined to the
    # outcomes reported for them: the production table) or `both`. `both` lets a retrain learn
    # the shift its own traffic shows; while no outcome has arrived it trains on the warehouse
    # alone and says so. `production` with no labelled rows is refused.
    data: Literal["warehouse", "production", "both"] = "both"
    # Production rows served within this many days before the training cutoff. The traffic log
    # keeps `monitor.retention_days`: a longer window finds nothing older.
    production_days: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _check(self) -> RetrainConfig:
        self.period_seconds  # noqa: B018 - raises on a malformed schedule
        return self

    @property
    def period_seconds(self) -> float | None:
        """Seconds between scheduled retrains; None when there is no schedule."""
        s = self.schedule.strip().lower()
        if s in ("none", "off", ""):
            return None
        if s in _PERIODS:
            return _PERIODS[s]
        m = _EVERY.match(s)
        if not m or int(m.group(1)) == 0:
            raise ValueError(
                f"retrain.schedule: {self.schedule!r} is not hourly|daily|weekly|none|every N[m|h|d]"
            )
        return int(m.group(1)) * {"m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _name_clashes(ds: DatasetConfig, ft: FeaturesConfig) -> list[str]:
    """Derived columns that would share a name with a dataset column.

    Feature building appends derived columns to batches holding the dataset's columns; a
    shared name (a data set with its own `hour`) would otherwise crash deep in Ray with
    "Duplicate column names", or silently overwrite the data."""
    owner = {ds.entity: "dataset.entity", ds.timestamp: "dataset.timestamp", ds.label: "dataset.label"}
    owner |= {c: "dataset.numeric" for c in ds.numeric} | {c: "dataset.categorical" for c in ds.categorical}
    lines = [
        f"{key}: derived feature {name!r} clashes with dataset column {name!r} ({owner[name]}); "
        f"rename the column with dataset.rename or {drop}"
        for name, key, drop in ft.derived()
        if name in owner
    ]
    lines += [
        f"{owner[name]}: dataset column {name!r} is a name mlsys uses for {use}; rename the column "
        "with dataset.rename"
        for name, use in INTERNAL_COLUMNS.items()
        if name in owner
    ]
    if FEATURE_TIMESTAMP in owner:
        lines.append(
            f"{owner[FEATURE_TIMESTAMP]}: dataset column {FEATURE_TIMESTAMP!r} clashes with the "
            f"derived column {FEATURE_TIMESTAMP!r} (each feature row's own time); rename the "
            "column with dataset.rename"
        )
    return lines


class AppConfig(_Section):
    dataset: DatasetConfig
    features: FeaturesConfig = FeaturesConfig()
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()
    model: ModelConfig = ModelConfig()
    mlp: MlpConfig = MlpConfig()
    gbdt: GbdtConfig = GbdtConfig()
    tune: TuneConfig = TuneConfig()
    serve: ServeConfig = ServeConfig()
    registry: RegistryConfig = RegistryConfig()
    monitor: MonitorConfig = MonitorConfig()
    outcomes: OutcomesConfig = OutcomesConfig()
    retrain: RetrainConfig = RetrainConfig()
    rollout: RolloutConfig = RolloutConfig()

    @model_validator(mode="after")
    def _check_features(self) -> AppConfig:
        ds, ft = self.dataset, self.features
        problems = [
            f"features.buckets.{col}: not a numeric column of the dataset"
            for col in ft.buckets
            if col not in ds.numeric
        ]
        crossable = set(ds.categorical) | {f"{c}_bucket" for c in ft.buckets}
        problems += [
            f"features.crosses.{i}: {name!r} is neither a categorical column nor a "
            f"bucketed numeric (<col>_bucket with features.buckets.<col>)"
            for i, cross in enumerate(ft.crosses)
            for name in cross
            if name not in crossable
        ]
        problems += _name_clashes(ds, ft)
        if problems:  # one line per problem; _format_errors keeps the lines
            raise ValueError("\n".join(problems))
        return self

    @property
    def mlflow_uri(self) -> str:
        """The MLflow tracking and registry URI: the configured server, else sqlite under storage."""
        return self.registry.tracking_uri or f"sqlite:///{self.storage.mlflow_db}"

    def fingerprint(self) -> str:
        """A short hash of the whole config, recorded as lineage with every artifact."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _parse_env_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Apply `MLSYS_SECTION__KEY[__SUBKEY]=value` overrides; values are parsed as YAML."""
    merged = json.loads(json.dumps(data))  # deep copy of plain data
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} does not name a config section")
            node = child
        node[path[-1]] = _parse_env_value(raw)
    return merged


# ---------------------------------------------------------------- the previous layout
# Before `model:`/`mlp:`/`gbdt:`, `train:` held the MLP's settings with the shared ones and
# `model:` also held the trees'. For one release such configs, and MLSYS_TRAIN__* /
# MLSYS_MODEL__* overrides, still load: each old key is moved to its new place, with one
# deprecation line per old place. The release after refuses them as unknown keys.
_SHARED_KEYS = frozenset(ModelConfig.model_fields) - {"family"}
_TREE_KEYS = frozenset(GbdtConfig.model_fields)
_GONE = "old names stop loading in the next release"


def _new_section(section: str, key: str) -> str | None:
    """The section that an old `section.key` now belongs to; None when it did not move."""
    if section == "train":
        return "model" if key in _SHARED_KEYS else "mlp"
    if section == "model" and key in _TREE_KEYS:
        return "gbdt"
    return None


def _moves(pairs: list[tuple[str, str]]) -> str:
    """`a, b to mlp:; c to model:` for (key, new section) pairs."""
    by_section: dict[str, list[str]] = {}
    for key, section in pairs:
        by_section.setdefault(section, []).append(key)
    return "; ".join(f"{', '.join(keys)} to `{section}:`" for section, keys in by_section.items())


def move_old_sections(data: dict[str, Any]) -> dict[str, Any]:
    """The config with a `train:` section, and tree settings under `model:`, moved to `mlp:`,
    `model:` and `gbdt:`; a key set in both its old and its new place is an error naming both."""
    moved = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    if "train" in moved and not isinstance(moved["train"] or {}, dict):
        raise ConfigError("train: must be a mapping of settings (now the `mlp:` and `model:` sections)")
    old_train = moved.pop("train", None) or {}
    old_model = moved.get("model")
    old_trees = {k: v for k, v in old_model.items() if k in _TREE_KEYS} if isinstance(old_model, dict) else {}
    clashes: list[str] = []
    said: list[str] = []
    for old, values in (("train", old_train), ("model", old_trees)):
        pairs = []
        for key, value in values.items():
            new = _new_section(old, key)
            target = moved.setdefault(new, {})
            if not isinstance(target, dict):
                continue  # the new section's own problem, reported by validation
            if old == "model":
                moved["model"].pop(key)
            if key in target:
                clashes.append(
                    f"{old}.{key} and {new}.{key}: both set; {old}.{key} is the old name, keep {new}.{key}"
                )
                continue
            target[key] = value
            pairs.append((key, new))
        if pairs:
            where = "`train:` section is" if old == "train" else "tree settings under `model:` are"
            said.append(f"the config's {where} deprecated ({_GONE}): move {_moves(pairs)}")
    if clashes:
        raise ConfigError("\n".join(clashes))
    for line in said:
        log.warning(line)
    return moved


def rename_old_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment with MLSYS_TRAIN__KEY and MLSYS_MODEL__<tree key> overrides renamed to
    the sections they now set (MLSYS_MLP__EPOCHS, MLSYS_GBDT__ROUNDS, ...)."""
    renamed, said, clashes = dict(environ), [], []
    for name in sorted(environ):
        path = name[len(ENV_PREFIX) :].split("__") if name.startswith(ENV_PREFIX) else []
        new = _new_section(path[0].lower(), path[1].lower()) if len(path) > 1 else None
        if new is None:
            continue
        new_name = "__".join([ENV_PREFIX + new.upper(), *path[1:]])
        if new_name in environ:
            clashes.append(f"{name} and {new_name}: both set; {name} is the old name, keep {new_name}")
            continue
        renamed[new_name] = renamed.pop(name)
        said.append(f"{name} read as {new_name}")
    if clashes:
        raise ConfigError("\n".join(clashes))
    if said:
        log.warning("old config names in the environment are deprecated (%s): %s", _GONE, ", ".join(said))
    return renamed


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{key}: {msg}" if key and not msg.startswith(key) else msg)
    return "\n".join(lines)


def parse_config(data: Any, environ: dict[str, str] | None = None) -> AppConfig:
    if not isinstance(data, dict):
        raise ConfigError("config: the file must hold a mapping of sections (dataset:, model:, ...)")
    environ = rename_old_env(dict(os.environ) if environ is None else environ)
    data = apply_env_overrides(move_old_sections(data), environ)
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


def with_absolute_paths(cfg: AppConfig) -> AppConfig:
    """Relative local paths resolved against this process's working directory.

    Done once at the edge: Ray workers, Serve replicas and retrain jobs run in other working
    directories, and must find the same storage and source."""
    storage = cfg.storage.model_copy(update={"root": str(cfg.storage.path())})
    source = cfg.dataset.source
    if "://" not in source and not Path(source).expanduser().is_absolute():
        suffix = "/" if source.endswith("/") else ""
        source = str(Path(source).expanduser().absolute()) + suffix
    return cfg.model_copy(
        update={"storage": storage, "dataset": cfg.dataset.model_copy(update={"source": source})}
    )


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    """Read a YAML config file, apply env overrides and validate it (paths made absolute)."""
    path = Path(path or os.environ.get("MLSYS_CONFIG") or DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (pass --config FILE)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {first_line(exc)}") from None
    return with_absolute_paths(parse_config(data, environ))
