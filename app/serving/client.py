"""A small HTTP client of the service, for the demo and the notebook: what a caller does.

It replays labelled rows as prediction requests (raw features, the entity as the A/B key)
and posts each row's true outcome as feedback with an outcome producer's token, over real HTTP.
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from app.config import AppConfig


class ServiceError(RuntimeError):
    pass


class ServiceClient:
    def __init__(self, url: str, *, outcomes_token: str | None = None, timeout: float = 30):
        """`outcomes_token`: an outcome producer's token, which `feedback` sends (the service
        takes outcomes from producers only; `mlsys outcomes producer add NAME`)."""
        self.url = url.rstrip("/")
        self.outcomes_token = outcomes_token
        self.session = requests.Session()
        # A replica that dies mid-request, or a proxy reload that closes an idle keep-alive
        # connection, costs a retry, not a failed call: every call made here is replay-safe
        # (scoring is pure, feedback dedupes by request_id: a repeat is a 409, taken as done).
        # A 503 (the monitor busy or restarting, the online store down) is retried after its
        # Retry-After, and a 500, which mlsys never answers on purpose (its errors are 4xx or
        # 503) but Serve does for a request caught on a replica that died; other HTTP error
        # statuses are not retried.
        retry = Retry(
            total=8,
            connect=3,
            read=2,
            status=5,
            other=0,
            status_forcelist=[500, 503],
            allowed_methods=None,
            respect_retry_after_header=True,
            backoff_factor=0.1,
            raise_on_status=False,
        )
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.timeout = timeout

    def _call(self, method: str, path: str, body=None, headers=None, accept=()) -> dict:
        try:
            resp = self._request(method, path, body, headers)
        except requests.exceptions.ChunkedEncodingError:
            # The connection broke after the headers, inside the body (a replica dying as it
            # answered): urllib3's retries end at the headers, so this one is ours, once.
            resp = self._request(method, path, body, headers)
        if resp.status_code >= 400 and resp.status_code not in accept:
            raise ServiceError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def _request(self, method: str, path: str, body, headers) -> requests.Response:
        return self.session.request(method, self.url + path, json=body, headers=headers, timeout=self.timeout)

    def predict_entity(self, entity_id) -> dict:
        return self._call("POST", "/predict", {"entity_id": entity_id})

    def replay(self, rows: pd.DataFrame, cfg: AppConfig, *, batch: int = 250) -> dict[str, int]:
        """Predict every row (by its raw features, keyed by its entity) and send its label back.

        Returns how many predictions each variant served."""
        ds = cfg.dataset
        served: Counter = Counter()
        for start in range(0, len(rows), batch):
            part = rows.iloc[start : start + batch]
            # The rows' own event times: their time features are what the model saw in training.
            instances = [
                {
                    "features": {c: _json_value(r[c]) for c in [*ds.features, ds.timestamp]},
                    "key": str(r[ds.entity]),
                }
                for r in part.to_dict("records")
            ]
            predictions = self._call("POST", "/predict", {"instances": instances})["predictions"]
            for p, label in zip(predictions, part[ds.label], strict=True):
                served[p["variant"]] += 1
                self.feedback(p, int(label))
        return dict(served)

    def feedback(self, prediction: dict, label: int) -> dict:
        """Report a prediction's outcome (with its receipt). A retried call whose first attempt
        was recorded after all is answered 409: the outcome is in, as intended."""
        body = {"request_id": prediction["request_id"], "label": label}
        if prediction.get("feedback_token"):
            body["feedback_token"] = prediction["feedback_token"]
        headers = {"Authorization": f"Bearer {self.outcomes_token}"} if self.outcomes_token else None
        return self._call("POST", "/feedback", body, headers, accept=(409,))

    def drift(self) -> dict:
        return self._call("GET", "/monitor/drift")

    def report(self) -> dict:
        return self._call("GET", "/experiment/report")

    def experiment(self) -> dict:
        return self._call("GET", "/experiment")

    def rollout(self) -> dict:
        return self._call("GET", "/experiment/rollout")


def _json_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value
