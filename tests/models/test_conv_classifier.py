"""The convolutional classifier: float64 gradient checks through padding, pooling and ReLU;
padding never leaks; it learns a local pattern and cannot see past its receptive field."""

import numpy as np
import pytest

from rnnkit.gradcheck import numeric_grad, rel_error
from rnnkit.models.conv_classifier import ConvClassifier, ConvClassifierConfig


def model(pooling="max", dtype="float64", **kw):
    cfg = dict(vocab_size=7, num_classes=3, embed_dim=4, hidden_size=5, num_layers=2,
               kernel_size=3, pooling=pooling, dtype=dtype, seed=0)
    cfg.update(kw)
    return ConvClassifier(ConvClassifierConfig(**cfg))


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_gradients_match_finite_differences(pooling):
    m = model(pooling)
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 7, (3, 8))
    lengths = np.array([8, 5, 2])
    labels = np.array([0, 2, 1])
    _, grads = m.loss(ids, lengths, labels)
    assert set(grads) == set(m.params)

    def f():
        return m.loss(ids, lengths, labels)[0]

    for name, p in m.params.items():
        assert rel_error(grads[name], numeric_grad(f, p, eps=1e-6)) < 1e-6, name


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_padding_never_leaks(pooling):
    m = model(pooling, dtype="float32", num_layers=3)
    rng = np.random.default_rng(2)
    seqs = [rng.integers(1, 7, n) for n in (9, 4, 1)]
    ids = np.zeros((3, 9), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    ids[1, 4:] = 5  # garbage in the padding must not matter
    batch = m.predict_proba(ids, np.array([9, 4, 1]))
    for i, s in enumerate(seqs):
        alone = m.predict_proba(s[None], None)
        np.testing.assert_allclose(batch[i], alone[0], rtol=1e-5, atol=1e-7)


def test_param_shapes_and_config():
    c = ConvClassifierConfig(10, 4, embed_dim=6, hidden_size=8, num_layers=3, kernel_size=5)
    m = ConvClassifier(c)
    assert {k: v.shape for k, v in m.params.items()} == ConvClassifier.param_shapes(c)
    assert c.receptive_field == 1 + 4 * (1 + 2 + 4)
    assert ConvClassifierConfig.from_json(c.to_json()) == c
    for bad in ({"pooling": "last"}, {"kernel_size": 0}, {"dtype": "float16"},
                {"architecture": "rnn"}, {"dropout": 1.0}):
        with pytest.raises(ValueError):
            ConvClassifierConfig(10, 4, **bad)
    with pytest.raises(ValueError, match="unexpected keys"):
        ConvClassifierConfig.from_json({**c.to_json(), "cell": "lstm"})


def _train(m, make, steps=300, lr=0.05, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        ids, y = make(rng, 32)
        _, g = m.loss(ids, None, y)
        for k, p in m.params.items():
            p -= lr * g[k]


def test_learns_a_local_pattern_but_not_beyond_its_reach():
    """Label: does the sequence hold the bigram (1, 2)?  Local: learnt.  Label: does the last
    symbol name the first, 30 steps apart?  Beyond a receptive field of 5: chance."""
    def bigram(rng, n):
        ids = rng.integers(3, 7, (n, 12))
        y = rng.integers(0, 2, n)
        pos = rng.integers(0, 11, n)  # noise 3..6 never forms the bigram (1, 2)
        ids[y == 1, pos[y == 1]] = 1
        ids[y == 1, pos[y == 1] + 1] = 2
        return ids, y

    def far_match(rng, n):
        # Key 1|2 first, query 3|4 last (its own symbols: with keys at both ends, "one kind
        # of key occurs" would answer without memory), noise 5|6 between.
        ids = rng.integers(5, 7, (n, 30))
        key = rng.integers(0, 2, n)
        ids[:, 0] = 1 + key
        y = rng.integers(0, 2, n)
        ids[:, -1] = 3 + np.where(y == 1, key, 1 - key)
        return ids, y

    for make, lo, hi in ((bigram, 0.95, 1.01), (far_match, 0.0, 0.65)):
        m = model("max", dtype="float32", num_classes=2, hidden_size=16, embed_dim=8,
                  num_layers=2, kernel_size=3, dilation_base=1)
        _train(m, make)
        ids, y = make(np.random.default_rng(99), 2000)
        acc = float((m.predict(ids) == y).mean())
        assert lo <= acc < hi, (make.__name__, acc)


def test_model_file_round_trip_and_forged_config(tmp_path):
    from rnnkit.checkpoint import load_checkpoint

    m = model(dtype="float32", num_layers=3)
    path = m.save(tmp_path / "m.safetensors", "rnnkit.classify", {"note": "x"})
    arrays, meta = load_checkpoint(path)
    cfg = ConvClassifierConfig.from_json(meta["config"])
    assert cfg.architecture == "conv" and cfg == m.config
    m2 = ConvClassifier.from_arrays(cfg, arrays)
    ids = np.random.default_rng(0).integers(1, 7, (4, 10))
    np.testing.assert_array_equal(m2.predict_proba(ids), m.predict_proba(ids))
    big = ConvClassifierConfig.from_json({**meta["config"], "hidden_size": 10 ** 7})
    with pytest.raises(ValueError, match="shape"):
        ConvClassifier.from_arrays(big, arrays)  # refused from the shapes, nothing allocated
