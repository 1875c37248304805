"""The one training loop's parts: the per-step reduction, the split of a batch over ranks and
dropout masks that do not depend on that split."""

import numpy as np
import pytest

from rnnkit.models import ClassifierConfig, SequenceClassifier
from rnnkit.models._blocks import pad_batch
from rnnkit.training import ExampleRNG, fit
from rnnkit.training.dist import Solo, share


class CountingWorld(Solo):
    """Rank 0 of 2 whose partner computes exactly what it does: the reduced sum is twice the
    local buffer.  Records every collective call."""

    rank, size = 0, 2

    def __init__(self):
        self.calls = []

    def allreduce_sum(self, buf):
        self.calls.append(("allreduce", buf.size, buf.dtype, buf.flags.c_contiguous))
        buf *= 2
        return buf

    def bcast_array(self, a):
        self.calls.append(("bcast_array", a.size))
        return a

    def bcast_json(self, obj):
        self.calls.append(("bcast_json",))
        return obj


def _tiny(seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.integers(3, 9, rng.integers(1, 6)) for _ in range(24)]
    ys = [int(x[0] % 2) for x in xs]
    model = SequenceClassifier(ClassifierConfig(9, 2, embed_dim=4, hidden_size=5, dropout=0.3,
                                                seed=seed))

    def make(idx):
        ids, lengths = pad_batch([xs[i] for i in idx])
        return {"ids": ids, "lengths": lengths, "labels": np.array([ys[i] for i in idx])}
    return model, make, len(xs)


def test_one_allreduce_per_step_on_one_contiguous_buffer():
    model, make, n = _tiny()
    world = CountingWorld()
    fit(model, make, n, steps=7, batch_size=6, lr=0.01, world=world,
        val=(make, n), eval_every=3)
    reduces = [c for c in world.calls if c[0] == "allreduce"]
    n_params = sum(p.size for p in model.params.values())
    assert len(reduces) == 7  # one per step, whatever the number of tensors
    assert all(c[1] == n_params + 3 and c[2] == np.float32 and c[3] for c in reduces)
    # The initial weights come from rank 0, one broadcast per tensor before the first step.
    assert sum(c[0] == "bcast_array" for c in world.calls) == len(model.params)


@pytest.mark.parametrize("n", [1, 5, 7, 8, 32])
@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_share_splits_exactly(n, k):
    parts = [share(n, k, r) for r in range(k)]
    covered = [i for s in parts for i in range(n)[s]]
    assert covered == list(range(n))
    sizes = [s.stop - s.start for s in parts]
    assert max(sizes) - min(sizes) <= 1


def test_dropout_masks_depend_on_the_example_not_the_split_or_padding():
    whole = ExampleRNG(3, 11, [0, 1, 2, 3]).random((4, 5, 6))  # batch-major (N, T, D)
    part = ExampleRNG(3, 11, [2, 3]).random((2, 9, 6))  # rank 1 of 2, padded longer
    np.testing.assert_array_equal(whole[2:], part[:, :5])
    tm_whole = ExampleRNG(3, 11, [0, 1, 2, 3]).random((5, 4, 6))  # time-major (T, N, H)
    tm_part = ExampleRNG(3, 11, [2, 3]).random((7, 2, 6))
    np.testing.assert_array_equal(tm_whole[:, 2:], tm_part[:5])
    # Another step, another call, another example: other masks.
    assert not np.array_equal(whole, ExampleRNG(3, 12, [0, 1, 2, 3]).random((4, 5, 6)))
    r = ExampleRNG(3, 11, [0, 1, 2, 3])
    first = r.random((4, 5, 6))
    assert np.array_equal(first, whole) and not np.array_equal(r.random((4, 5, 6)), whole)
    assert 0.45 < whole.mean() < 0.55


def test_dropout_rng_refuses_a_shape_without_the_batch():
    with pytest.raises(ValueError, match="no axis of the batch's 3 examples"):
        ExampleRNG(0, 0, [0, 1, 2]).random((4, 5))


def test_time_major_masks_when_time_equals_the_batch():
    """T == N makes the shape ambiguous: the recurrent layers name the batch axis."""
    whole = ExampleRNG(1, 2, [0, 1, 2, 3]).random_batch((2, 4, 5), 1)  # T 2, N 4
    part = ExampleRNG(1, 2, [2, 3]).random_batch((2, 2, 5), 1)  # T 2 == N 2 on rank 1
    np.testing.assert_array_equal(whole[:, 2:], part)


def test_stacked_dropout_is_split_independent_when_time_equals_the_share():
    """A 2-layer LSTM with dropout between the layers: the loss and gradients of examples
    [0, 4) equal the weighted halves [0, 2) and [2, 4) — with T == 2 == the half batch."""
    from rnnkit.models import SequenceTagger, TaggerConfig

    model = SequenceTagger(TaggerConfig(7, 3, embed_dim=3, hidden_size=4, num_layers=2,
                                        dropout=0.4, dtype="float64", seed=1))
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 7, (4, 2))
    tags = rng.integers(0, 3, (4, 2))
    lengths = np.array([2, 2, 2, 2])

    def loss(idx):
        b = {"ids": ids[idx], "lengths": lengths[idx], "tags": tags[idx]}
        return model.batch_loss(b, training=True, rng=ExampleRNG(9, 3, idx))

    full, g = loss(np.arange(4))
    (a, ga), (b, gb) = loss(np.arange(2)), loss(np.arange(2, 4))
    assert abs(full - (a + b) / 2) < 1e-12
    for k in g:
        np.testing.assert_allclose(g[k], (ga[k] + gb[k]) / 2, rtol=1e-10, atol=1e-13)


def test_flattened_time_major_masks_follow_their_example():
    """The LM's output layer drops on (T*N, H): example j owns rows j, N + j, ..."""
    whole = ExampleRNG(5, 1, [0, 1, 2, 3]).random((3 * 4, 6)).reshape(3, 4, 6)
    part = ExampleRNG(5, 1, [2, 3]).random((3 * 2, 6)).reshape(3, 2, 6)
    np.testing.assert_array_equal(whole[:, 2:], part)


@pytest.mark.parametrize("extra", [{}, {"softmax": "adaptive", "cutoffs": "8"},
                                   {"tie_embeddings": True}])
def test_word_lm_with_dropout_trains_through_the_loop(extra, tmp_path):
    """Every place the language model draws a dropout mask (embedding, between layers, the
    flattened output) takes the loop's per-example generator."""
    from rnnkit.lm.train import Trainer, TrainOptions

    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"the {a} sat on the {b} .\n" for a in ("cat", "dog", "bird")
                              for b in ("mat", "rug")) * 6, encoding="utf-8")
    opts = TrainOptions(out=str(tmp_path / "r"), corpus=[str(corpus)], level="word", layers=2,
                        hidden=8, embed=8, seq_len=5, batch=3, steps=3, dropout=0.3,
                        eval_every=3, **extra)
    summary = Trainer(opts, stream=open("/dev/null", "w")).run()
    assert summary["steps"] == 3 and np.isfinite(summary["best_val_loss"])
