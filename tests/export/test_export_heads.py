"""Language models with the other output heads exported: tied embeddings (with and
without the E != H projection) and the adaptive softmax, in ONNX (ONNX Runtime, float32,
1e-5; reference evaluator, float64, 1e-9) and PyTorch (float32 and float64), ragged rows and
a generation step from the exported state."""

import dataclasses

import numpy as np
import pytest

from rnnkit.models.language_model import LanguageModel, LMConfig

HAS_HEADS = "softmax" in {f.name for f in dataclasses.fields(LMConfig)}
HEADS = [("tied", 4), ("tied", 5), ("adaptive", 5)] if HAS_HEADS else []
LENGTHS = np.array([5, 2, 4])
TOL = {"float32": 1e-5, "float64": 1e-9}


def make(head, embed_dim, cell="gru", dtype="float32"):
    kw = {"tie_embeddings": True} if head == "tied" else \
        {"softmax": "adaptive", "cutoffs": [5, 9], "div_value": 2.0}
    cfg = LMConfig(vocab_size=14, cell=cell, num_layers=2, hidden_size=4, embed_dim=embed_dim,
                   dtype=dtype, **kw)
    model = LanguageModel(cfg, seed=3)
    model.rnn.backend = "numpy"
    return model


def inputs(model, dtype):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 14, (len(LENGTHS), int(LENGTHS.max())))
    h0 = (rng.standard_normal((2, len(LENGTHS), 4)) * 0.5).astype(dtype)
    return ids, h0


def close(a, b, tol):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    err = float(np.max(np.abs(a - np.asarray(b))))
    assert err < tol, f"max abs difference {err:.3g} >= {tol:g}"


@pytest.mark.parametrize("head,embed_dim", HEADS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx(head, embed_dim, dtype):
    pytest.importorskip("onnxruntime")
    from _exportcheck import run

    from rnnkit.export._meta import metadata
    from rnnkit.export.onnx_format import onnx_models

    model = make(head, embed_dim, dtype=dtype)
    proto = onnx_models(model, "language_model",
                        metadata(model, "language_model", {}))["model.onnx"]
    if head == "tied":  # the shared weight is stored once
        assert sum(i.name == "embed.weight" for i in proto.graph.initializer) == 1
        assert not any(i.name == "out.weight" for i in proto.graph.initializer)
    ids, h0 = inputs(model, dtype)
    feeds = {"ids": ids, "lengths": LENGTHS, "h0": h0}
    got = run(proto, feeds, np.dtype(dtype).type)
    for i, n in enumerate(LENGTHS):
        lp, fin = model.log_probs(ids[i:i + 1, :n], h0[:, i:i + 1])
        close(got["log_probs"][i, :n], lp[0], TOL[dtype])
        close(got["h_n"][:, i], fin[:, 0], TOL[dtype])
    # one generation step from the exported state
    nxt = np.array([[3], [7], [12]])
    step = run(proto, {"ids": nxt, "lengths": np.ones(3, np.int64), "h0": got["h_n"]},
               np.dtype(dtype).type)
    for i, n in enumerate(LENGTHS):
        full = np.concatenate([ids[i, :n], nxt[i]])[None]
        lp, _ = model.log_probs(full, h0[:, i:i + 1])
        close(step["log_probs"][i, 0], lp[0, -1], TOL[dtype])


@pytest.mark.parametrize("head,embed_dim", HEADS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch(head, embed_dim, dtype):
    torch = pytest.importorskip("torch")
    from rnnkit.export import to_torch

    model = make(head, embed_dim, cell="lstm", dtype=dtype)
    net = to_torch(model)
    if head == "adaptive":
        assert isinstance(net.out, torch.nn.AdaptiveLogSoftmaxWithLoss)
        assert "out.tail.1.0.weight" in net.state_dict()
    ids, h0 = inputs(model, dtype)
    c0 = np.zeros_like(h0)
    with torch.no_grad():
        lp_t, h_n, c_n = net(torch.from_numpy(ids), torch.from_numpy(LENGTHS),
                             torch.from_numpy(h0), torch.from_numpy(c0))
    for i, n in enumerate(LENGTHS):
        lp, (fh, fc) = model.log_probs(ids[i:i + 1, :n], (h0[:, i:i + 1], c0[:, i:i + 1]))
        close(lp_t[i, :n], lp[0], TOL[dtype])
        close(h_n[:, i], fh[:, 0], TOL[dtype])
        close(c_n[:, i], fc[:, 0], TOL[dtype])
