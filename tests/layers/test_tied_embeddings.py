"""Language models with tied embeddings or the adaptive softmax: gradients, saved once,
normalised probabilities through score/eval/sample/beam, old configs unchanged."""

import numpy as np
import pytest

from rnnkit.gradcheck import numeric_grad, rel_error
from rnnkit.models.language_model import LanguageModel, LMConfig
from rnnkit.sparse_grad import RowSparse

V = 20


def _model(**kw):
    kw.setdefault("embed_dim", 5)
    cfg = LMConfig(vocab_size=V, cell="lstm", num_layers=2, hidden_size=6, dtype="float64",
                   div_value=2.0, **kw)
    return LanguageModel(cfg, seed=0)


HEADS = {
    "tied-proj": dict(tie_embeddings=True),                 # E = 5 != H = 6: through out.proj
    "tied-square": dict(tie_embeddings=True, embed_dim=6),  # E == H: the weight itself
    "adaptive": dict(softmax="adaptive", cutoffs=[5, 12]),
}


def _xy(seed=1, N=3, T=4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))


@pytest.mark.parametrize("kind", list(HEADS))
@pytest.mark.parametrize("sparse", [False, True])
def test_whole_model_gradients(kind, sparse):
    m = _model(**HEADS[kind])
    m.sparse_embedding_grad = sparse
    x, y = _xy()
    loss, grads, _ = m.loss_and_grads(x, y)
    assert set(grads) == set(m.params)
    for name, p in m.params.items():
        num = numeric_grad(lambda: m.loss_and_grads(x, y)[0], p)
        assert rel_error(np.asarray(grads[name]), num) < 1e-6, name


def test_tied_weight_is_one_array_with_the_sum_of_both_gradients():
    m = _model(**HEADS["tied-proj"])
    assert "out.weight" not in m.params and m.params["out.proj"].shape == (5, 6)
    assert m.out.shared is m.params["embed.weight"]  # the same array, not a copy
    x, y = _xy()
    _, grads, _ = m.loss_and_grads(x, y)
    # Split the two uses apart (input lookups read a copy, the output the original) and
    # differentiate each numerically: the model's gradient is their sum.
    W = m.params["embed.weight"]
    m.embed.params["weight"] = W_in = W.copy()
    f = lambda: m.loss_and_grads(x, y)[0]  # noqa: E731
    num_in, num_out = numeric_grad(f, W_in), numeric_grad(f, W)
    m.embed.params["weight"] = W
    assert rel_error(grads["embed.weight"], num_in + num_out) < 1e-6
    # the input use touches the batch's rows only; the output use every row
    untouched = np.setdiff1d(np.arange(V), x)
    assert untouched.size and not num_in[untouched].any()
    assert np.abs(num_out[untouched]).min() > 0


@pytest.mark.parametrize("kind", list(HEADS))
def test_probabilities_are_normalised_and_consistent(kind):
    m = _model(**HEADS[kind])
    x, y = _xy(2)
    lp, _ = m.log_probs(x)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-12)
    t, _ = m.target_log_probs(x, y)
    np.testing.assert_allclose(t, np.take_along_axis(lp, y[..., None], -1)[..., 0], atol=1e-12)
    loss, _, _ = m.loss_and_grads(x, y)
    assert abs(loss + t.mean()) < 1e-12
    step = m.stepper()
    lp0, _ = step(x[:, 0])
    np.testing.assert_allclose(lp0, lp[:, 0], atol=1e-12)


@pytest.mark.parametrize("kind", list(HEADS))
def test_dropout_path_gradients(kind):
    m = _model(dropout=0.3, **HEADS[kind])
    x, y = _xy(3)

    def f(with_grads=False):
        out = m.loss_and_grads(x, y, training=True, rng=np.random.default_rng(7))
        return out if with_grads else out[0]

    _, grads, _ = f(True)
    for name in ("embed.weight", "rnn.weight_ih_l1", *[k for k in m.params if k.startswith("out.")]):
        assert rel_error(np.asarray(grads[name]), numeric_grad(f, m.params[name])) < 1e-6, name


def test_sparse_embedding_gradient_is_rows_of_the_batch():
    m = _model(softmax="adaptive", cutoffs=[5, 12])
    m.sparse_embedding_grad = True
    x, y = _xy(4)
    _, grads, _ = m.loss_and_grads(x, y)
    g = grads["embed.weight"]
    assert isinstance(g, RowSparse)
    np.testing.assert_array_equal(g.rows, np.unique(x))
    m.sparse_embedding_grad = False
    _, dense, _ = m.loss_and_grads(x, y)
    np.testing.assert_allclose(np.asarray(g), dense["embed.weight"], atol=1e-14)


def test_saved_once_and_reloaded(tmp_path):
    from rnnkit.checkpoint import load_checkpoint
    from rnnkit.data import Vocab
    from rnnkit.lm.bundle import load_model, save_model

    vocab = Vocab(["<pad>", "<unk>", "<eos>"] + [f"w{i}" for i in range(V - 3)])
    for kind, kw in HEADS.items():
        m = _model(**kw)
        path = save_model(tmp_path / f"{kind}.safetensors", m, vocab, "word")
        arrays, meta = load_checkpoint(path)
        assert sorted(arrays) == sorted(m.params)
        if kw.get("tie_embeddings"):
            assert "out.weight" not in arrays
        back = load_model(path).model
        x, y = _xy(5)
        np.testing.assert_array_equal(back.target_log_probs(x, y)[0], m.target_log_probs(x, y)[0])
        if kw.get("tie_embeddings"):
            assert back.out.shared is back.params["embed.weight"]


def test_old_config_without_the_new_fields_loads_as_full_softmax():
    old = {"vocab_size": 30, "cell": "lstm", "num_layers": 1, "hidden_size": 8, "embed_dim": 4,
           "dropout": 0.0, "nonlinearity": "tanh", "reset_after": True, "dtype": "float32"}
    cfg = LMConfig.from_json(old)
    assert cfg.softmax == "full" and cfg.tie_embeddings is False and cfg.cutoffs is None
    assert set(LanguageModel.param_shapes(cfg)) >= {"out.weight", "out.bias"}


@pytest.mark.parametrize("kw, why", [
    (dict(softmax="adaptive", cutoffs=[5, V]), "cutoffs must lie in"),
    (dict(softmax="adaptive", cutoffs=[7, 3]), "strictly increasing"),
    (dict(softmax="full", cutoffs=[5]), "cutoffs belong to the adaptive"),
    (dict(softmax="adaptive", tie_embeddings=True), "tied embeddings need the full softmax"),
    (dict(softmax="hierarchical"), "softmax must be one of"),
])
def test_bad_configs_are_one_line_errors(kw, why):
    with pytest.raises(ValueError, match=why):
        LMConfig(vocab_size=V, hidden_size=64, embed_dim=5, **kw)


@pytest.mark.parametrize("kind", list(HEADS))
def test_sample_beam_and_score_through_other_heads(kind):
    from rnnkit.data import Vocab, WordTokenizer
    from rnnkit.lm import generate
    from rnnkit.lm.score import evaluate_text, score_sentences

    m = _model(**HEADS[kind])
    vocab = Vocab(["<pad>", "<unk>", "<eos>"] + [f"w{i}" for i in range(V - 3)])
    tok = WordTokenizer()
    texts = generate.sample(m, vocab, tok, "w1 w2", length=6, temperature=0.8, top_k=5,
                            top_p=0.9, num=3, seed=0)
    assert len(texts) == 3 and all(t.startswith("w1 w2") for t in texts)
    ids, logprob = generate.beam_search(m, vocab, tok, "w1", beam_width=3, length=5)
    g_ids, g_logprob = generate.greedy(m, vocab, tok, "w1", length=5)
    assert logprob >= g_logprob - 1e-9  # the beam finds at least the greedy path's score
    # beam's score is the model's own log-probability of that continuation
    prime = vocab.encode(["<eos>", "w1"])
    x = np.concatenate([prime, ids[:-1]])[None]
    lp, _ = m.log_probs(x)
    mine = lp[0, np.arange(1, x.shape[1]), ids].sum()
    assert abs(mine - logprob) < 1e-9
    # score and eval agree on one sentence
    sc = score_sentences(m, vocab, tok, ["w3 w4 w5"])[0]
    ev = evaluate_text(m, vocab, tok, "w3 w4 w5\n")
    assert abs(sc["logprob"] - ev["logprob"]) < 1e-9


def test_word_vocabulary_generates_without_the_table(monkeypatch):
    import rnnkit.models.language_model as lm

    m = _model()
    x, _ = _xy(6)
    lp, _ = m.log_probs(x)
    with_table = m.stepper()(x[:, 0])[0]
    monkeypatch.setattr(lm, "TABLE_MAX_V", 4)  # V = 20 counts as a word vocabulary now
    calls = []
    monkeypatch.setattr(m.rnn, "input_tables", lambda W: calls.append(1))
    without = m.stepper()(x[:, 0])[0]
    assert not calls
    np.testing.assert_allclose(without, with_table, atol=1e-12)
    np.testing.assert_allclose(without, lp[:, 0], atol=1e-12)
