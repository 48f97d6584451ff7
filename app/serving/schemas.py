"""Request and response models of the HTTP API, built from the dataset section of the config.

Feature fields are typed per column (numbers for numeric features, strings for categorical
ones), strictly: a string where a number belongs, NaN/Infinity, a missing or an unknown field
is refused with the field's name, and the OpenAPI spec at /docs lists every field.
(No postponed annotations: the request models are classes built at run time.)
"""

import time
from datetime import datetime
from types import SimpleNamespace
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    create_model,
    model_validator,
)

from app.config import AppConfig
from app.serving.scoring import ScoreRow

# Magnitude limit of a numeric feature: anything larger overflows float32 once scaled and would
# score NaN; it is refused with the field's name instead.
MAX_ABS_NUMBER = 1e15
Number = (
    Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER)]
    | Annotated[int, Field(strict=True, ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER)]
)
Int64 = Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]  # what the online store keys


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Explanation(_Strict):
    """Each model feature's additive share of the score's logit: base + sum = logit(score)."""

    base: float
    contributions: dict[str, float]


class Prediction(_Strict):
    request_id: str
    variant: str
    model_version: int
    score: float
    label: int
    feedback_token: str | None = None  # echo it with /feedback (serve.feedback_auth)
    explanation: Explanation | None = None  # with "explain": true in the request


class PredictionBatch(_Strict):
    predictions: list[Prediction]


class Feedback(_Strict):
    request_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    label: Literal[0, 1]
    feedback_token: Annotated[str, Field(max_length=64, pattern=r"^[0-9]{1,12}\.[0-9a-f]{1,64}$")] | None = (
        None
    )


class FeedbackAck(_Strict):
    request_id: str
    status: Literal["joined", "pending", "recorded"]


class Promotion(_Strict):
    version: StrictInt | None = None  # default: the current challenger


def request_models(cfg: AppConfig) -> SimpleNamespace:
    """The /predict request models for this dataset (field names and types from the config)."""
    ds = cfg.dataset
    fields = {c: (Number | None, ...) for c in ds.numeric}
    Category = Annotated[StrictStr, Field(max_length=cfg.serve.max_string_length)]
    fields.update({c: (Category | None, ...) for c in ds.categorical})
    fields[ds.timestamp] = (datetime | None, None)  # scored as of now when absent
    FeaturesModel = create_model("Features", __base__=_Strict, **fields)
    EntityId = Int64 if ds.entity_type == "int64" else Annotated[str, Field(min_length=1, max_length=256)]
    Key = Int64 | Annotated[str, Field(min_length=1, max_length=256)]

    class Instance(_Strict):
        """One row: by entity id (features from the online store) or with its features."""

        entity_id: EntityId | None = None  # type: ignore[valid-type]
        features: FeaturesModel | None = None  # type: ignore[valid-type]
        key: Key | None = Field(None, description="A/B assignment key for a features row")  # type: ignore[valid-type]

        @model_validator(mode="after")
        def _one_source(self):
            if (self.entity_id is None) == (self.features is None):
                raise ValueError("give exactly one of entity_id or features")
            if self.key is not None and self.entity_id is not None:
                raise ValueError("key: only for a features row (an entity_id is its own key)")
            return self

        def score_row(self, received: float | None = None, *, explain: bool = False) -> ScoreRow:
            features = None if self.features is None else self.features.model_dump()
            received = time.perf_counter() if received is None else received
            return ScoreRow(self.entity_id, features, self.key, received, explain)

    class PredictRequest(_Strict):
        entity_id: EntityId | None = None  # type: ignore[valid-type]
        features: FeaturesModel | None = None  # type: ignore[valid-type]
        key: Key | None = None  # type: ignore[valid-type]
        instances: list[Instance] | None = Field(None, min_length=1, max_length=cfg.serve.max_instances)
        explain: StrictBool = Field(False, description="answer each row with its features' contributions")

        @model_validator(mode="after")
        def _one_source(self):
            given = [n for n in ("entity_id", "features", "instances") if getattr(self, n) is not None]
            if len(given) != 1:
                raise ValueError("give exactly one of entity_id, features or instances")
            if self.key is not None and self.features is None:
                raise ValueError("key: only for a features request")
            if self.explain and len(self.instances or [None]) > cfg.serve.max_explain_rows:
                raise ValueError(
                    f"explain: at most {cfg.serve.max_explain_rows} rows per request (serve.max_explain_rows)"
                )
            return self

        def rows(self) -> list[ScoreRow]:
            """The rows to score, all stamped with this request's arrival."""
            if self.instances is not None:
                received = time.perf_counter()
                return [i.score_row(received, explain=self.explain) for i in self.instances]
            features = None if self.features is None else self.features.model_dump()
            return [ScoreRow(entity_id=self.entity_id, features=features, key=self.key, explain=self.explain)]

    return SimpleNamespace(Features=FeaturesModel, Instance=Instance, PredictRequest=PredictRequest)
