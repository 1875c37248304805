"""Helpers for the export tests: run an ONNX model in ONNX Runtime (float32) or in onnx's
reference evaluator taught ``sequence_lens`` (float64, which ONNX Runtime's recurrent
operators lack)."""

import numpy as np


def session(model_proto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model_proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _ragged(base, name):
    """onnx's reference op with ONNX's ``sequence_lens`` semantics, which it ignores: each
    row runs alone over its own length (so the reverse direction starts at its last step),
    Y is zero past it, and the final states are those at its last step."""

    def _run(self, X, W, R, B=None, sequence_lens=None, *states, **attrs):
        if sequence_lens is None:
            return base._run(self, X, W, R, B, None, *states, **attrs)
        T, N = X.shape[:2]
        rows = []
        for i, n in enumerate(sequence_lens):
            own = [s[:, i:i + 1] if s is not None and s.ndim == 3 else s for s in states]
            rows.append(base._run(self, X[:n, i:i + 1], W, R, B, None, *own, **attrs))
        Y = np.zeros((T, W.shape[0], N, R.shape[-1]), dtype=X.dtype)
        for i, (n, out) in enumerate(zip(sequence_lens, rows)):
            Y[:n, :, i:i + 1] = out[0]
        finals = [np.concatenate([out[j] for out in rows], axis=1) for j in range(1, len(rows[0]))]
        return (Y, *finals)

    return type(name, (base,), {"_run": _run})


def reference(model_proto):
    """onnx's reference evaluator (float64 capable), with sequence_lens and ONNX's Relu."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops.op_gru import GRU
    from onnx.reference.ops.op_lstm import LSTM
    from onnx.reference.ops.op_rnn import RNN_14

    class RNNRelu(RNN_14):  # the reference evaluator lacks ONNX's Relu activation
        def choose_act(self, name, alpha, beta):
            if name in ("Relu", "relu"):
                return lambda x: np.maximum(x, 0)
            return super().choose_act(name, alpha, beta)

    ops = [_ragged(LSTM, "LSTM"), _ragged(GRU, "GRU"), _ragged(RNNRelu, "RNN")]
    return ReferenceEvaluator(model_proto, new_ops=ops)


def run(model_proto, feeds, dtype):
    """Outputs by name: ONNX Runtime for float32, onnx's reference evaluator for float64."""
    names = [o.name for o in model_proto.graph.output]
    runner = session(model_proto) if dtype == np.float32 else reference(model_proto)
    return dict(zip(names, runner.run(None, feeds)))


def numpy_backend(model):
    """The model's recurrent layers on the reference NumPy path."""
    for name in ("rnn", "encoder", "decoder"):
        if hasattr(model, name):
            getattr(model, name).backend = "numpy"
    return model


def set_cell(layer, nonlinearity, reset_after):
    """Give a task model's layer the RNN activation / GRU form (task configs fix them)."""
    from rnnkit.cells import make_cell

    layer.nonlinearity, layer.reset_after = nonlinearity, reset_after
    layer.cell = make_cell(layer.mode, nonlinearity=nonlinearity, reset_after=reset_after)
    layer._fused = None
