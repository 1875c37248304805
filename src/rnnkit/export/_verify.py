"""After an ONNX export, before anything is written: run the graphs in ONNX Runtime on a small
ragged batch and compare them with rnnkit's own forward pass, so a wrong export never reaches
the disk.  Skipped (returns None) where onnxruntime is not installed or the graph is float64
(ONNX Runtime's CPU LSTM/GRU/RNN run float32 only).  Shapes: N batch, T time, V vocabulary.
"""

from __future__ import annotations

import numpy as np

# float32 graphs of float32 (or cast float64) weights against rnnkit in the model's type
TOLERANCE = 1e-4
LENGTHS = np.array([5, 3, 1])


class ExportCheckFailed(RuntimeError):
    """ONNX Runtime's outputs differ from rnnkit's: the export is refused, nothing written."""


def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _sessions(files: dict) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return {name: ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            for name, data in files.items()}


def _run(sess, feeds: dict) -> dict:
    names = [o.name for o in sess.get_outputs()]
    inputs = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(None, {k: v for k, v in feeds.items() if k in inputs})))


def _zeros(sess, name, N):
    inp = next(i for i in sess.get_inputs() if i.name == name)
    return np.zeros([N if not isinstance(d, int) else d for d in inp.shape], np.float32)


def _state_feeds(sess, got: dict, N: int) -> dict:
    """h0 / c0 for a decoder: from ``got`` (an encoder's or condition graph's outputs)."""
    names = {i.name for i in sess.get_inputs()}
    return {k: got[k] if k in got else _zeros(sess, k, N) for k in ("h0", "c0") if k in names}


def check_onnx(model, kind: str, files: dict, rng=None):
    """Max |ONNX Runtime - rnnkit| over every output checked, or None when not checkable.

    ``files``: ``{name: serialized ModelProto}``.  Raises :class:`ExportCheckFailed` over
    :data:`TOLERANCE`.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    import onnx

    first = onnx.load_from_string(next(iter(files.values())))
    if any(o.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE for o in first.graph.output):
        return None
    rng = rng if rng is not None else np.random.default_rng(0)
    s = _sessions(files)
    N, T = len(LENGTHS), int(LENGTHS.max())
    pairs = []  # (ONNX Runtime's output, rnnkit's)
    if kind == "language_model":
        ids = rng.integers(0, model.config.vocab_size, (N, T))
        sess = s["model.onnx"]
        got = _run(sess, {"ids": ids, "lengths": LENGTHS, **_state_feeds(sess, {}, N)})
        for i, n in enumerate(LENGTHS):
            pairs.append((got["log_probs"][i, :n], model.log_probs(ids[i:i + 1, :n])[0][0]))
    elif kind in ("classifier", "tagger"):
        ids = rng.integers(0, model.config.vocab_size, (N, T))
        got = _run(s["model.onnx"], {"ids": ids, "lengths": LENGTHS})["log_probs"]
        want = _log_softmax(model.forward(ids, LENGTHS)[0])
        if kind == "classifier":
            pairs.append((got, want))
        else:
            pairs += [(got[i, :n], want[i, :n]) for i, n in enumerate(LENGTHS)]
    elif kind == "seq2seq":
        c = model.config
        src = rng.integers(0, c.src_vocab_size, (N, T))
        tin = rng.integers(0, c.tgt_vocab_size, (N, 3))
        enc = _run(s["encoder.onnx"], {"ids": src, "lengths": LENGTHS})
        dec = s["decoder.onnx"]
        want = _log_softmax(model.forward(src, LENGTHS, tin)[0])
        if "memory" in enc:  # attention: the first decoder step
            got = _run(dec, {"ids": tin[:, :1], "memory": enc["memory"], "src_lengths": LENGTHS,
                             "feed": _zeros(dec, "feed", N), **_state_feeds(dec, enc, N)})
            pairs.append((got["log_probs"][:, 0], want[:, 0]))
        else:
            got = _run(dec, {"ids": tin, "lengths": np.full(N, 3), **_state_feeds(dec, enc, N)})
            pairs.append((got["log_probs"], want))
    elif kind == "generator":
        c = model.config
        cond = rng.integers(0, c.num_classes, N) if c.num_classes else \
            rng.standard_normal((N, c.cond_dim)).astype(np.float32)
        init = _run(s["condition.onnx"], {"cond": cond})
        tin = rng.integers(0, c.vocab_size, (N, 3))
        dec = s["decoder.onnx"]
        got = _run(dec, {"ids": tin, "lengths": np.full(N, 3), **_state_feeds(dec, init, N)})
        pairs.append((got["log_probs"], _log_softmax(model.forward(cond, tin)[0])))
    worst = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                for a, b in pairs)
    if not worst <= TOLERANCE:
        raise ExportCheckFailed(f"ONNX Runtime's outputs differ from rnnkit's by {worst:.3g} "
                                f"(over {TOLERANCE:g}); nothing written")
    return worst
