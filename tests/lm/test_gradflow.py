"""Gradient flow: dL_T/dh_t from the hand-written backward, checked against a hand-computed
case, centred finite differences and torch autograd; the ``rnnkit gradflow`` command."""

import json

import numpy as np
import pytest

from rnnkit.gradflow import (ReferenceStack, lm_gradflow, lm_parts, lm_state_grads,
                             norms_by_distance, state_grads)
from rnnkit.gradcheck import rel_error
from rnnkit.layers.recurrent import RecurrentLayer
from rnnkit.models.language_model import LanguageModel, LMConfig

G = {"rnn": 1, "gru": 3, "lstm": 4}


def random_stack(cell, D=3, H=4, L=2, seed=0, scale=0.8):
    rng = np.random.default_rng(seed)
    p = {}
    for layer in range(L):
        d = D if layer == 0 else H
        p[f"weight_ih_l{layer}"] = rng.uniform(-scale, scale, (G[cell] * H, d))
        p[f"weight_hh_l{layer}"] = rng.uniform(-scale, scale, (G[cell] * H, H))
        p[f"bias_ih_l{layer}"] = rng.uniform(-scale, scale, G[cell] * H)
        p[f"bias_hh_l{layer}"] = rng.uniform(-scale, scale, G[cell] * H)
    return ReferenceStack(cell, p)


def test_scalar_rnn_matches_the_hand_computed_power_law():
    # One unit, no input, zero bias: h stays 0 so tanh' = 1 and dL/dh_{T-k} = a^k * g exactly.
    a, g, T = 0.7, 2.0, 12
    s = ReferenceStack("rnn", {"weight_ih_l0": np.zeros((1, 1)), "weight_hh_l0": np.array([[a]]),
                               "bias_ih_l0": np.zeros(1), "bias_hh_l0": np.zeros(1)})
    grads = state_grads(s, np.ones((1, T, 1)), np.array([[g]]))
    expected = g * a ** np.arange(T)[::-1]  # by time t
    np.testing.assert_allclose(grads[0, :, 0], expected, rtol=1e-14)
    np.testing.assert_allclose(norms_by_distance(grads), g * a ** np.arange(T), rtol=1e-14)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_state_grads_match_finite_differences(cell):
    """dL/dh_t of a one-layer stack: perturb h_t, run the rest of the sequence from it."""
    s = random_stack(cell, L=1, seed=1)
    rng = np.random.default_rng(2)
    N, T, H = 2, 6, 4
    x = rng.standard_normal((N, T, 3))
    w = rng.standard_normal((N, H))  # L = sum(w * h_T)
    grads = state_grads(s, x, w)
    states = s.forward(x)[0]
    w_ih, b_ih, w_hh, b_hh = s.weights(0)
    xp = x.transpose(1, 0, 2) @ w_ih.T + b_ih

    def loss_from(t, h):
        c = None if states["c"] is None else states["c"][t]
        for u in range(t + 1, T):
            h, c, _ = s.cell.step(xp[u], h, c, w_hh, b_hh)
        return float((w * h).sum())

    eps = 1e-6
    for t in range(T):
        num = np.zeros((N, H))
        for n in range(N):
            for k in range(H):
                hp = states["out"][t].copy()
                hp[n, k] += eps
                hm = states["out"][t].copy()
                hm[n, k] -= eps
                num[n, k] = (loss_from(t, hp) - loss_from(t, hm)) / (2 * eps)
        assert rel_error(grads[:, t], num) < 1e-6, (cell, t)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layer", [0, 1])
def test_state_grads_match_torch_autograd(cell, layer):
    """Every layer of a 2-layer stack against torch cells run step by step with the same weights
    (the lower layer's h_t feeds both its next step and the layer above)."""
    torch = pytest.importorskip("torch")
    s = random_stack(cell, L=2, seed=3)
    rng = np.random.default_rng(4)
    N, T, D, H = 3, 7, 3, 4
    x = rng.standard_normal((N, T, D))
    w = rng.standard_normal((N, H))
    ours = state_grads(s, x, w, layer=layer)
    cls = {"rnn": torch.nn.RNNCell, "gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}[cell]
    cells = []
    for li in range(2):
        c = cls(D if li == 0 else H, H, dtype=torch.float64)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(c, name).copy_(torch.from_numpy(s.params[f"{name}_l{li}"]))
        cells.append(c)
    inp = [torch.from_numpy(x[:, t]) for t in range(T)]
    seen = []
    for li, c in enumerate(cells):
        h = torch.zeros(N, H, dtype=torch.float64)
        cc = torch.zeros(N, H, dtype=torch.float64)
        outs = []
        for t in range(T):
            if cell == "lstm":
                h, cc = c(inp[t], (h, cc))
            else:
                h = c(inp[t], h)
            h.retain_grad()
            outs.append(h)
        seen.append(outs)
        inp = outs
    loss = (torch.from_numpy(w) * seen[-1][-1]).sum()
    loss.backward()
    ref = np.stack([h.grad.numpy() for h in seen[layer]], axis=1)
    assert rel_error(ours, ref) < 1e-10


def test_from_layer_uses_the_layer_weights():
    layer = RecurrentLayer(3, 5, 2, mode="gru", dtype=np.float64, seed=0)
    s = ReferenceStack.from_layer(layer)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    out, _, _ = layer.forward(x)
    np.testing.assert_allclose(s.forward(x)[-1]["out"].transpose(1, 0, 2), out, atol=1e-12)


def tiny_lm(cell="lstm", L=2, dtype="float64"):
    return LanguageModel(LMConfig(11, cell=cell, num_layers=L, hidden_size=6, embed_dim=4,
                                  dtype=dtype), seed=5)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_lm_parts_reads_the_model(cell):
    model = tiny_lm(cell)
    parts = lm_parts(model)
    ids = np.random.default_rng(0).integers(0, 11, (3, 9))
    lp, _ = model.log_probs(ids)
    h = parts.rnn.forward(parts.embedding[ids])[-1]["out"].transpose(1, 0, 2)
    z = h @ parts.out_weight.T + parts.out_bias
    ours = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
    np.testing.assert_allclose(ours, lp, atol=1e-10)


def test_lm_state_grads_match_finite_differences_of_the_lm_loss():
    """L_T = -log p(target | inputs) at the last step; dL/dh_t of the top layer by perturbing
    the state and running the rest of the sequence."""
    model = tiny_lm("lstm", L=1)
    parts = lm_parts(model)
    rng = np.random.default_rng(1)
    inputs = rng.integers(0, 11, (2, 5))
    targets = rng.integers(0, 11, 2)
    grads = lm_state_grads(parts, inputs, targets)
    s = parts.rnn
    x = parts.embedding[inputs]
    states = s.forward(x)[0]
    w_ih, b_ih, w_hh, b_hh = s.weights(0)
    xp = x.transpose(1, 0, 2) @ w_ih.T + b_ih

    def loss(t, h):
        c = states["c"][t]
        for u in range(t + 1, inputs.shape[1]):
            h, c, _ = s.cell.step(xp[u], h, c, w_hh, b_hh)
        z = h @ parts.out_weight.T + parts.out_bias
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        return float((lse - z[np.arange(2), targets]).sum())

    eps = 1e-6
    for t in (0, 2, 4):
        num = np.zeros((2, 6))
        for n in range(2):
            for k in range(6):
                hp, hm = states["out"][t].copy(), states["out"][t].copy()
                hp[n, k] += eps
                hm[n, k] -= eps
                num[n, k] = (loss(t, hp) - loss(t, hm)) / (2 * eps)
        assert rel_error(grads[:, t], num) < 1e-6


def test_lm_gradflow_averages_the_per_sequence_norms():
    model = tiny_lm("gru")
    parts = lm_parts(model)
    ids = np.random.default_rng(2).integers(0, 11, 200)
    got = lm_gradflow(parts, ids, length=8, count=10, seed=3, batch=4)
    # The same windows, all at once, averaged by hand.
    rng = np.random.default_rng(3)
    starts = rng.integers(0, 200 - 8, size=10)
    inputs = ids[starts[:, None] + np.arange(8)]
    g = lm_state_grads(parts, inputs, ids[starts + 8])
    ref = np.linalg.norm(g, axis=2).mean(axis=0)[::-1]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert got.shape == (8,) and np.all(got > 0)


def test_plain_rnn_gradient_vanishes_faster_than_lstm_with_forget_bias():
    """The notes' claim in miniature: small recurrent weights make a tanh RNN's gradient shrink
    geometrically, while an LSTM whose forget gate is held open (bias +4) keeps it."""
    rng = np.random.default_rng(0)
    H = 8
    p_rnn = {"weight_ih_l0": rng.uniform(-0.3, 0.3, (H, 2)),
             "weight_hh_l0": rng.uniform(-0.3, 0.3, (H, H)), "bias_ih_l0": np.zeros(H),
             "bias_hh_l0": np.zeros(H)}
    b = np.zeros(4 * H)
    b[H:2 * H] = 4.0
    p_lstm = {"weight_ih_l0": rng.uniform(-0.3, 0.3, (4 * H, 2)),
              "weight_hh_l0": rng.uniform(-0.3, 0.3, (4 * H, H)), "bias_ih_l0": b,
              "bias_hh_l0": np.zeros(4 * H)}
    x = rng.standard_normal((16, 40, 2))
    w = rng.standard_normal((16, H))
    n_rnn = norms_by_distance(state_grads(ReferenceStack("rnn", p_rnn), x, w))
    n_lstm = norms_by_distance(state_grads(ReferenceStack("lstm", p_lstm), x, w))
    assert n_rnn[30] / n_rnn[0] < 1e-8
    assert n_lstm[30] / n_lstm[0] > 1e-3


# ---- the command ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    from rnnkit.data.tokenize import get_tokenizer
    from rnnkit.data.vocab import Vocab
    from rnnkit.lm.bundle import save_model

    d = tmp_path_factory.mktemp("gf")
    text = "the cat sat on the mat (and the dog sat too).\n" * 20
    (d / "text.txt").write_text(text)
    tok = get_tokenizer("char")
    vocab = Vocab.build(tok.tokenize(text))
    m = LanguageModel(LMConfig(len(vocab), cell="gru", num_layers=1, hidden_size=12, embed_dim=5),
                      seed=0)
    save_model(d / "m", m, vocab, "char")
    return d


def test_gradflow_command_writes_png_and_json(lm_dir, capsys):
    from rnnkit.cli import main
    from rnnkit.data.tokenize import get_tokenizer
    from rnnkit.lm.bundle import load_model

    out = lm_dir / "flow"
    rc = main(["gradflow", str(lm_dir / "m"), "--cell", "rnn,lstm", "--length", "20",
               "--count", "6", "--file", str(lm_dir / "text.txt"), "--out", str(out)])
    assert rc == 0
    data = json.loads((lm_dir / "flow.json").read_text())
    assert data["distance"] == list(range(20))
    names = list(data["models"])
    assert names[0] == str(lm_dir / "m") and len(names) == 3
    assert any(n.startswith("rnn (fresh, 1 × 12)") for n in names)  # the DIR's sizes
    png = (lm_dir / "flow.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # The trained model's curve is what the library computes on the same windows.
    b = load_model(lm_dir / "m")
    ids = b.vocab.encode(get_tokenizer("char").tokenize((lm_dir / "text.txt").read_text()))
    ref = lm_gradflow(lm_parts(b.model), ids, 20, 6, seed=0)
    np.testing.assert_allclose(data["models"][names[0]], ref, rtol=1e-12)
    # No overwrite without --force.
    capsys.readouterr()
    assert main(["gradflow", "--cell", "rnn", "--length", "5", "--count", "2", "--file",
                 str(lm_dir / "text.txt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, needle", [
    (["--cell", "tanh"], "unknown cell"),
    (["--cell", "rnn", "--length", "0"], "--length"),
    ([], "give model directories"),
    (["/nonexistent/model"], "no such model"),
])
def test_gradflow_bad_input_is_one_line_exit_2(lm_dir, capsys, argv, needle):
    from rnnkit.cli import main

    capsys.readouterr()
    rc = main(["gradflow", *argv, "--out", str(lm_dir / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1
    assert not (lm_dir / "bad.json").exists()


@pytest.mark.parametrize("head", [{"tie_embeddings": True, "embed_dim": 6},
                                  {"softmax": "adaptive", "cutoffs": [5, 8], "div_value": 2.0}])
def test_lm_state_grads_through_tied_and_adaptive_heads(head):
    """The loss at step T goes through the model's own output head."""
    cfg = dict(cell="gru", num_layers=1, hidden_size=6, embed_dim=4, dtype="float64")
    cfg.update(head)
    model = LanguageModel(LMConfig(11, **cfg), seed=5)
    parts = lm_parts(model)
    rng = np.random.default_rng(1)
    inputs = rng.integers(0, 11, (3, 5))
    targets = rng.integers(0, 11, 3)
    grads = lm_state_grads(parts, inputs, targets)
    # Distance 0 by centred differences on h_T through the head; the rest follows the cells.
    h_T = parts.rnn.forward(parts.embedding[inputs])[-1]["out"][-1]
    num = np.zeros_like(h_T)
    for n in range(3):
        for k in range(6):
            hp, hm = h_T.copy(), h_T.copy()
            hp[n, k] += 1e-6
            hm[n, k] -= 1e-6
            num[n, k] = (model.head.forward(hp, targets)[0].sum()
                         - model.head.forward(hm, targets)[0].sum()) / 2e-6
    assert rel_error(grads[:, -1], num) < 1e-6
    # And the head's loss is the model's: -log p(target) as log_probs gives it.
    lp, _ = model.log_probs(inputs)
    np.testing.assert_allclose(model.head.forward(h_T, targets)[0],
                               -lp[np.arange(3), -1, targets], rtol=1e-9)
