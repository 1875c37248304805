"""Seq2Seq with attention as a model: parity with the torch re-implementation through the
model's own loss, gradient checks, decoding (greedy = beam 1, a batch decodes each row as
it would alone), alignments, saving and loading, forged files refused before allocation."""

import json

import numpy as np
import pytest

from rnnkit.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.data.vocab import Vocab
from rnnkit.gradcheck import numeric_grad, rel_error
from rnnkit.models import Seq2Seq, Seq2SeqConfig
from rnnkit.data.batching import pad_sequences as pad_batch
from rnnkit.tasks import load_bundle, save_bundle

torch = pytest.importorskip("torch")

from test_attention_torch import batch, torch_loss  # noqa: E402


def model(kind="additive", cell="lstm", L=1, bi=True, dtype="float64", H=5, **kw):
    return Seq2Seq(Seq2SeqConfig(7, 9, embed_dim=4, hidden_size=H, num_layers=L, cell=cell,
                                 bidirectional=bi, dtype=dtype, attention=kind, **kw))


@pytest.mark.parametrize("kind,cell,L,bi", [("additive", "lstm", 2, True),
                                            ("general", "gru", 1, False),
                                            ("general", "lstm", 1, True)])
def test_model_loss_matches_torch(kind, cell, L, bi):
    m = model(kind, cell, L, bi)
    src, sl, tin, tout, tlen = batch(np.random.default_rng(3))
    # The model's own entry point: targets without <eos>, decoder_io adds the ends.
    targets = [tout[i, : tlen[i] - 1] for i in range(len(tlen))]
    t_in, t_out, t_len = m.decoder_io(targets)
    loss, grads = m.loss(src, sl, targets)
    tl, tg = torch_loss(m.params, cell, L, bi, kind, src, sl, t_in, t_out, t_len)
    assert abs(loss - tl) <= 1e-10 * abs(tl)
    assert set(grads) == set(m.params)
    for k in grads:
        assert rel_error(grads[k], tg[k]) < 1e-10, k


def test_model_gradient_check_with_dropout():
    m = model("additive", "lstm", 2, True, dropout=0.3)
    # Sharper scores than at initialisation, so the attention's own gradients are far above
    # the finite differences' rounding.
    m.params["attention.v"][...] *= 20.0
    m.params["attention.query_weight"][...] *= 5.0
    src, sl, _, tout, tlen = batch(np.random.default_rng(4))
    targets = [tout[i, : tlen[i] - 1] for i in range(len(tlen))]

    def f():
        return m.loss(src, sl, targets, training=True, rng=np.random.default_rng(1))[0]

    _, grads = m.loss(src, sl, targets, training=True, rng=np.random.default_rng(1))
    for name in ("attention.v", "attention.query_weight", "attn_combine.weight",
                 "decoder.weight_ih_l0", "encoder.weight_hh_l1_reverse", "src_embed.weight"):
        assert rel_error(grads[name], numeric_grad(f, m.params[name])) < 1e-6, name


def test_param_shapes_match_the_model():
    for kind in ("additive", "general", "none"):
        for bi in (False, True):
            m = model(kind, "gru", 2, bi, dtype="float32")
            shapes = {k: v.shape for k, v in m.params.items()}
            assert shapes == {k: tuple(v) for k, v in Seq2Seq.param_shapes(m.config).items()}
    m = model("additive", "lstm", 1, True)
    # Input feeding: the decoder's first layer reads [embedding, previous h~].
    assert m.params["decoder.weight_ih_l0"].shape == (4 * 5, 4 + 5)
    assert m.params["attention.key_weight"].shape == (5, 10)  # memory = both directions
    assert m.params["attn_combine.weight"].shape == (5, 10 + 5)


def trained(kind="additive", steps=60, seed=0):
    """A small model fitted a little to reversal, so its decisions are not all ties."""
    from rnnkit.optim import Adam

    rng = np.random.default_rng(seed)
    m = Seq2Seq(Seq2SeqConfig(8, 9, embed_dim=8, hidden_size=16, bidirectional=True,
                              attention=kind, dtype="float64", seed=seed))
    opt = Adam(lr=0.02)
    for _ in range(steps):
        seqs = [rng.integers(3, 8, rng.integers(1, 6)) for _ in range(16)]
        src, sl = pad_batch(seqs)
        _, g = m.loss(src, sl, [s[::-1] + 1 for s in seqs])
        opt.step(m.params, g)
    return m


@pytest.fixture(scope="module")
def fitted():
    return trained()


def test_attention_learns_reversal_better_than_none():
    rng = np.random.default_rng(9)
    seqs = [rng.integers(3, 8, rng.integers(3, 6)) for _ in range(64)]
    src, sl = pad_batch(seqs)
    targets = [s[::-1] + 1 for s in seqs]
    loss = {k: trained(k, steps=80).loss(src, sl, targets)[0] for k in ("additive", "none")}
    assert loss["additive"] < 0.5 * loss["none"], loss


def test_greedy_is_beam_one_and_rows_decode_as_alone(fitted):
    rng = np.random.default_rng(2)
    seqs = [rng.integers(3, 8, n) for n in (5, 1, 3, 4)]
    src, sl = pad_batch(seqs)
    greedy = fitted.greedy(src, sl, max_len=8)
    assert greedy == fitted.beam_search(src, sl, 1, max_len=8)
    beam = fitted.beam_search(src, sl, 3, max_len=8)
    for i, s in enumerate(seqs):
        one = s[None, :]
        assert fitted.greedy(one, None, max_len=8)[0] == greedy[i]
        assert fitted.beam_search(one, None, 3, max_len=8)[0] == beam[i]


def test_alignments_are_the_decoders_weights(fitted):
    rng = np.random.default_rng(5)
    seqs = [rng.integers(3, 8, n) for n in (4, 2, 5)]
    src, sl = pad_batch(seqs)
    outs = fitted.greedy(src, sl, max_len=8)
    aligns = fitted.alignments(src, sl, outs)
    for s, o, a in zip(seqs, outs, aligns):
        assert a.shape == (len(o) + 1, len(s))  # one row per output token and the <eos>
        np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-12)
    # Row t is what the decoder read when it chose output t: replay greedy decoding step by
    # step, collecting the weights of each step.
    logp, state, _ = fitted._begin(src[:1], sl[:1], 8)
    seen = []
    for tok in outs[0] + [2]:
        assert logp[0].argmax() == tok
        logp, state = fitted._attn_step(np.array([tok]), state, seen)
    replay = np.concatenate(seen)  # weights of the steps after each fed token
    np.testing.assert_allclose(aligns[0][1:], replay[:-1, : len(seqs[0])], rtol=1e-10,
                               atol=1e-12)
    with pytest.raises(ValueError, match="no attention"):
        trained("none", steps=1).alignments(src, sl, outs)


def vocabs():
    return (Vocab.build(list("abcde")), Vocab.build(list("ABCDEF")))


def save(tmp_path, m):
    sv, tv = vocabs()
    save_bundle(tmp_path, "seq2seq", m, {"src_vocab": sv.to_json(), "tgt_vocab": tv.to_json(),
                                         "source_level": "char", "target_level": "char"})
    return tmp_path / "model.safetensors"


def test_save_load_round_trip(tmp_path):
    m = Seq2Seq(Seq2SeqConfig(8, 9, embed_dim=4, hidden_size=6, bidirectional=True,
                              attention="general", num_layers=2, cell="gru"))
    save(tmp_path, m)
    back, meta = load_bundle(tmp_path, "seq2seq")
    assert back.config.attention == "general"
    for k, v in m.params.items():
        np.testing.assert_array_equal(back.params[k], v)
    src, sl = pad_batch([np.array([3, 4, 5]), np.array([6])])
    assert back.beam_search(src, sl, 3, max_len=6) == m.beam_search(src, sl, 3, max_len=6)


@pytest.mark.parametrize("change,match", [
    ({"attention": "dot"}, "unknown attention"),
    ({"attention": 1}, "unknown attention"),
    ({"attention": "none"}, "missing"),  # attention weights without attention
    ({"hidden_size": 10 ** 9}, "shape"),  # refused from the config alone: no allocation
])
def test_forged_config_refused(tmp_path, change, match):
    m = Seq2Seq(Seq2SeqConfig(8, 9, embed_dim=4, hidden_size=6, bidirectional=True,
                              attention="additive"))
    path = save(tmp_path, m)
    arrays, meta = load_checkpoint(path)
    meta["config"].update(change)
    save_checkpoint(path, arrays, meta)
    with pytest.raises(ValueError, match=match):
        load_bundle(tmp_path, "seq2seq")


def test_attention_weights_of_the_wrong_shape_refused(tmp_path):
    m = Seq2Seq(Seq2SeqConfig(8, 9, embed_dim=4, hidden_size=6, attention="additive"))
    path = save(tmp_path, m)
    arrays, meta = load_checkpoint(path)
    arrays["attention.v"] = np.zeros(7, dtype=np.float32)
    save_checkpoint(path, arrays, meta)
    with pytest.raises(ValueError, match=r"attention\.v"):
        load_bundle(tmp_path, "seq2seq")


def test_config_json_of_old_models_means_no_attention():
    cfg = Seq2SeqConfig(8, 9)
    assert cfg.attention == "none"
    d = json.loads(json.dumps(cfg.__dict__))
    d.pop("attention")
    from rnnkit.models._blocks import config_from_json
    assert config_from_json(Seq2SeqConfig, d).attention == "none"
