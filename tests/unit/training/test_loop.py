import numpy as np
import torch

from app.model.net import ModelSpec, TabularMLP, predict_proba
from app.training.loop import eval_epoch, train_epoch, worker_shards


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


def test_worker_shards_deal_every_row_into_equal_shards():
    rows = np.arange(1001)
    arrays = {"numeric": rows[:, None].astype(np.float32), "label": rows.astype(np.float32)}
    shards = worker_shards(arrays, 3, seed=7)
    assert [len(s["label"]) for s in shards] == [334, 334, 334]  # ceil(1001 / 3): same batch count each
    dealt = np.concatenate([s["label"] for s in shards])
    assert set(dealt.tolist()) == set(rows.tolist())  # no row left out; one repeats to fill the shards
    assert len(dealt) - len(np.unique(dealt)) == 1
    for s in shards:  # columns stay aligned row by row
        np.testing.assert_array_equal(s["numeric"][:, 0], s["label"])
    assert not np.array_equal(dealt[:334], np.arange(334))  # dealt at random, not in time order
    again = worker_shards(arrays, 3, seed=7)
    assert all(np.array_equal(a["label"], b["label"]) for a, b in zip(shards, again, strict=True))


def test_one_worker_gets_every_row_once():
    arrays = {"label": np.arange(10, dtype=np.float32)}
    (shard,) = worker_shards(arrays, 1, seed=0)
    assert sorted(shard["label"].tolist()) == list(range(10))
