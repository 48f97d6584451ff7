import numpy as np
import torch

from app.model.net import ModelSpec, TabularMLP, predict_proba
from app.training.loop import eval_epoch, train_epoch


def _batches(rng, n=2048, size=256):
    numeric = rng.normal(size=(n, 3)).astype(np.float32)
    categorical = rng.integers(0, 4, size=(n, 1))
    logit = 2 * numeric[:, 0] - numeric[:, 1] + (categorical[:, 0] == 2) * 1.5
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return [
        {
            "numeric": torch.from_numpy(numeric[i : i + size]),
            "categorical": torch.from_numpy(categorical[i : i + size]),
            "label": torch.from_numpy(label[i : i + size]),
        }
        for i in range(0, n, size)
    ]


def test_training_lowers_validation_loss():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train, valid = _batches(rng), _batches(rng, n=1024)
    model = TabularMLP(ModelSpec(n_numeric=3, cardinalities=(4,), width=16, depth=2, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = eval_epoch(model, valid)
    for _ in range(5):
        loss, rows = train_epoch(model, train, opt)
    after = eval_epoch(model, valid)
    assert rows == 2048 and before[1] == after[1] == 1024
    assert after[0] / after[1] < before[0] / before[1] - 0.1


def test_predict_proba_matches_the_model():
    model = TabularMLP(ModelSpec(n_numeric=2, cardinalities=(3, 5)))
    numeric = np.random.default_rng(1).normal(size=(10, 2)).astype(np.float32)
    categorical = np.zeros((10, 2), dtype=np.int64)
    p = predict_proba(model, numeric, categorical, batch_size=3)
    expected = (
        torch.sigmoid(model.eval()(torch.from_numpy(numeric), torch.from_numpy(categorical))).detach().numpy()
    )
    np.testing.assert_allclose(p, expected, rtol=1e-6)
    assert p.dtype == np.float64 and ((p > 0) & (p < 1)).all()
