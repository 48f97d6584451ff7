"""What the registry leaves in MLflow (a real sqlite store): a registered version's learning curve
as step metrics, and a run for a candidate the gate refused, with its reason and no version."""

from __future__ import annotations

from app.data.synthetic import Defects, generate
from app.registry.registry import CHAMPION, Registry
from tests.helpers import quick_bundle

HISTORY = [{"epoch": e, "train_loss": 0.7 - 0.1 * e, "val_loss": 0.72 - 0.08 * e} for e in range(4)]


def test_a_registered_version_logs_its_learning_curve_per_epoch(cfg):
    bundle = quick_bundle(cfg, generate(1500, seed=1, defects=Defects(0, 0, 0, 0, 0, 0)), seed=1)
    bundle.metrics["training"] = {"history": HISTORY}
    registry = Registry(cfg)
    version = registry.register(bundle, params={}, alias=CHAMPION)
    run_id = next(v.run_id for v in registry.versions() if v.version == version)
    curve = registry.client.get_metric_history(run_id, "curve.val_loss")
    assert [(m.step, round(m.value, 6)) for m in curve] == [
        (h["epoch"], round(h["val_loss"], 6)) for h in HISTORY
    ]


def test_a_refused_candidate_is_a_run_with_the_gates_reason_and_no_version(cfg):
    bundle = quick_bundle(cfg, generate(1500, seed=2, defects=Defects(0, 0, 0, 0, 0, 0)), seed=2)
    bundle.metrics["training"] = {"history": [{"round": r, "val_loss": 0.6} for r in range(1500)]}
    registry = Registry(cfg)
    run_id = registry.record_refused(bundle, params={"lr": 0.1}, reason="auc 0.61 < champion 0.70 - 0.002")
    run = registry.client.get_run(run_id)
    assert run.data.tags["gate.passed"] == "false" and "champion 0.70" in run.data.tags["gate.reason"]
    assert run.data.params["lr"] == "0.1" and run.data.metrics["holdout.auc"] == 0.5
    assert len(registry.client.get_metric_history(run_id, "curve.val_loss")) == 1500  # batched past 1,000
    assert registry.versions() == []
