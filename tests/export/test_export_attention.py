"""Seq2seq with attention exported: the encoder (decoder's initial state and the
memory it attends to) and the decoder step with input feeding, in ONNX (ONNX Runtime, float32,
1e-5; reference evaluator, float64, 1e-9) and PyTorch (1e-5 / 1e-9), ragged sources, every
step's log-probabilities and attention weights against rnnkit's teacher-forced pass."""

import dataclasses

import numpy as np
import pytest

from rnnkit.layers.basic import log_softmax
from rnnkit.models import Seq2Seq, Seq2SeqConfig

HAS_ATTENTION = "attention" in {f.name for f in dataclasses.fields(Seq2SeqConfig)}
CASES = [("additive", "lstm", 2, True), ("general", "gru", 1, False),
         ("general", "lstm", 1, True), ("additive", "rnn", 2, False)] if HAS_ATTENTION else []
SRC_LENGTHS = np.array([5, 2, 4])
TOL = {"float32": 1e-5, "float64": 1e-9}


def make(kind, cell, layers, bi, dtype):
    cfg = Seq2SeqConfig(src_vocab_size=10, tgt_vocab_size=8, embed_dim=4, hidden_size=5,
                        num_layers=layers, cell=cell, bidirectional=bi, dtype=dtype,
                        attention=kind)
    model = Seq2Seq(cfg)
    for layer in (model.encoder, model.decoder):
        layer.backend = "numpy"
    return model


def data():
    rng = np.random.default_rng(2)
    src = rng.integers(0, 10, (len(SRC_LENGTHS), int(SRC_LENGTHS.max())))
    tin = rng.integers(0, 8, (len(SRC_LENGTHS), 4))
    tin[:, 0] = 2  # <eos> starts
    return src, tin


def reference(model, src, tin):
    """rnnkit's teacher-forced log-probabilities (N, M, V), attention (N, M, S), the decoder's
    initial state and the memory."""
    state, memory, _ = model._encode(src, SRC_LENGTHS)
    logits, _, alpha = model._attend(src, SRC_LENGTHS, memory, state, tin, False, None)
    return log_softmax(logits), alpha, state, memory


def close(a, b, tol):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    err = float(np.max(np.abs(a - np.asarray(b))))
    assert err < tol, f"max abs difference {err:.3g} >= {tol:g}"


@pytest.mark.parametrize("kind,cell,layers,bi", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx(kind, cell, layers, bi, dtype):
    pytest.importorskip("onnxruntime")
    from _exportcheck import run

    from rnnkit.export._meta import metadata
    from rnnkit.export.onnx_format import onnx_models

    model = make(kind, cell, layers, bi, dtype)
    files = onnx_models(model, "seq2seq", metadata(model, "seq2seq", {}))
    src, tin = data()
    want_lp, want_alpha, state, memory = reference(model, src, tin)
    dt = np.dtype(dtype).type
    enc = run(files["encoder.onnx"], {"ids": src, "lengths": SRC_LENGTHS}, dt)
    lstm = cell == "lstm"
    close(enc["h0"], state[0] if lstm else state, TOL[dtype])
    close(enc["memory"], memory, TOL[dtype])
    dec = files["decoder.onnx"]
    assert [i.name for i in dec.graph.input] == \
        ["ids", "h0"] + (["c0"] if lstm else []) + ["feed", "memory", "src_lengths"]
    feeds = {"h0": enc["h0"], "memory": enc["memory"], "src_lengths": SRC_LENGTHS,
             "feed": np.zeros((len(src), 5), dt)}
    if lstm:
        feeds["c0"] = enc["c0"]
    for t in range(tin.shape[1]):
        got = run(dec, {**feeds, "ids": tin[:, t:t + 1]}, dt)
        close(got["log_probs"][:, 0], want_lp[:, t], TOL[dtype])
        close(got["alpha"], want_alpha[:, t], TOL[dtype])
        feeds.update(h0=got["h_n"], feed=got["feed_n"])
        if lstm:
            feeds["c0"] = got["c_n"]


@pytest.mark.parametrize("kind,cell,layers,bi", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch(kind, cell, layers, bi, dtype):
    torch = pytest.importorskip("torch")
    from rnnkit.export import to_torch

    model = make(kind, cell, layers, bi, dtype)
    net = to_torch(model)
    src, tin = data()
    want_lp, want_alpha, state, memory = reference(model, src, tin)
    s, sl = torch.from_numpy(src), torch.from_numpy(SRC_LENGTHS)
    with torch.no_grad():
        got_state, got_memory = net.encode(s, sl)
        close(got_state[0], state[0] if cell == "lstm" else state, TOL[dtype])
        close(got_memory, memory, TOL[dtype])
        close(net(s, sl, torch.from_numpy(tin)), want_lp, TOL[dtype])
        feed = torch.zeros(len(src), 5, dtype=got_memory.dtype)
        cur = got_state
        for t in range(tin.shape[1]):
            lp, cur, feed, alpha = net.step(torch.from_numpy(tin[:, t]), cur, feed, got_memory, sl)
            close(lp, want_lp[:, t], TOL[dtype])
            close(alpha, want_alpha[:, t], TOL[dtype])


@pytest.mark.parametrize("fmt", ["onnx", "torch"] if HAS_ATTENTION else [])
def test_cli_exports_an_attention_model(tmp_path, fmt):
    pytest.importorskip("onnx")
    from rnnkit.cli import main
    from rnnkit.data.vocab import Vocab
    from rnnkit.tasks.bundle import save_bundle

    model = make("general", "gru", 1, True, "float32")
    vocab = {n: Vocab(["<pad>", "<unk>", "<eos>"] + [f"t{i}" for i in range(n - 3)]).to_json()
             for n in (8, 10)}
    (tmp_path / "m").mkdir()
    save_bundle(tmp_path / "m", "seq2seq", model,
                {"src_vocab": vocab[10], "tgt_vocab": vocab[8], "source_level": "word",
                 "target_level": "word"})
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "out"), "--format", fmt]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == (["decoder.onnx", "encoder.onnx"] if fmt == "onnx"
                     else ["model.py", "model.safetensors"])
