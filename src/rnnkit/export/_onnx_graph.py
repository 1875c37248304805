"""A small ONNX graph builder and the one piece that matters: a recurrent stack as ONNX's
own ``LSTM`` / ``GRU`` / ``RNN`` operators.

Shapes: N batch, T time, D input, H hidden, L layers, K directions (2 if bidirectional),
G gates.  ONNX's recurrent operators are time-major (``layout=0``; ONNX Runtime does not
implement ``layout=1``): X (T, N, D) -> Y (T, K, N, H), Y_h / Y_c (K, N, H).

Conversions from rnnkit's layout (PyTorch's names, shapes and gate order):

- gate order: LSTM i,f,g,o -> ONNX i,o,f,c; GRU r,z,n -> ONNX z,r,h; RNN has one block;
- weights: W (K, G*H, D) and R (K, G*H, H) stack the directions, forward first;
  B (K, 2*G*H) is ``[b_ih, b_hh]`` per direction (ONNX's Wb and Rb);
- GRU ``reset_after=True`` (PyTorch's form) is ``linear_before_reset=1``, the notes' form
  (reset applied to h before its product) is ``linear_before_reset=0``;
- RNN ``activations`` Tanh or Relu, once per direction;
- ``sequence_lens`` (int32) gives ONNX's ragged semantics, the same as rnnkit's: past a
  sequence's end the state is carried unchanged and Y is zero; the reverse direction
  reads each sequence backwards within its own length (checked by tests/test_export_onnx.py).

Only the builder imports ``onnx``; callers import this module inside functions.
"""

from __future__ import annotations

import numpy as np

OPSET = 17  # ai.onnx opset: LSTM/GRU/RNN 14, LogSoftmax 13; ONNX Runtime >= 1.14 runs it
IR_VERSION = 8  # the IR version opset 17 needs; older runtimes refuse newer IR versions

# Row blocks of rnnkit's gate-stacked matrices, in ONNX's gate order.
_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}
_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


class Graph:
    """Nodes, initializers, inputs and outputs of one ONNX graph under construction."""

    def __init__(self, name: str, dtype):
        from onnx import TensorProto

        self.name = name
        self.dtype = np.dtype(dtype)
        self.elem = TensorProto.DOUBLE if self.dtype == np.float64 else TensorProto.FLOAT
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self._count = 0

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, value, name: str | None = None, dtype=None) -> str:
        """An initializer holding ``value`` (float arrays in the graph's dtype)."""
        from onnx import numpy_helper

        a = np.asarray(value)
        if dtype is not None:
            a = a.astype(dtype)
        elif a.dtype.kind == "f":
            a = a.astype(self.dtype)
        name = name or self.fresh("const")
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, inputs, n_out: int = 1, name: str | None = None,
           outputs=None, **attrs):
        """Add a node; returns its output name (or the list of them when n_out > 1)."""
        from onnx import helper

        base = name or self.fresh(op_type.lower())
        outs = list(outputs) if outputs else \
            ([base] if n_out == 1 else [f"{base}_out{i}" for i in range(n_out)])
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=base, **attrs))
        return outs[0] if n_out == 1 else outs

    def input(self, name: str, elem, shape) -> str:
        from onnx import helper

        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, name: str, elem, shape) -> None:
        from onnx import helper

        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))

    def identity(self, src: str, name: str) -> str:
        """Give a tensor its public name (graph outputs carry the contract's names)."""
        return self.op("Identity", [src], outputs=[name], name=f"{name}_out")

    def model(self, metadata: dict, doc: str = ""):
        """The checked ``ModelProto`` with ``metadata`` as ``metadata_props``."""
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  initializer=self.inits, doc_string=doc)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="rnnkit", ir_version=IR_VERSION)
        helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
        onnx.checker.check_model(model, full_check=True)
        return model

    # ---- small compositions ----------------------------------------------------------
    def linear(self, x: str, params: dict, prefix: str) -> str:
        """x (..., F) @ W.T + b for a rnnkit Linear's params (weight (O, F), bias (O,))."""
        y = self.op("MatMul", [x, self.const(params["weight"].T, f"{prefix}.weight_t")])
        if params.get("bias") is not None:
            y = self.op("Add", [y, self.const(params["bias"], f"{prefix}.bias")])
        return y

    def squeeze(self, x: str, axis: int) -> str:
        return self.op("Squeeze", [x, self.ints([axis])])

    def unsqueeze(self, x: str, axis: int) -> str:
        return self.op("Unsqueeze", [x, self.ints([axis])])


def _blocks(w: np.ndarray, mode: str) -> np.ndarray:
    """Reorder the gate blocks (rows) of a (G*H, ...) array into ONNX's gate order."""
    order = _GATE_ORDER[mode]
    H = w.shape[0] // len(order)
    return np.concatenate([w[g * H:(g + 1) * H] for g in order], axis=0)


def merge(g: Graph, y: str, dir_axis: int, K: int, mode: str) -> str:
    """Combine the direction axis of y into features like rnnkit's ``merge_mode``.

    y: (T, K, N, H) with dir_axis 1, or (K, N, H) with dir_axis 0.  Returns (T, N, F) or
    (N, F); F = K*H for 'concat' (forward features first), H otherwise.
    """
    if K == 1:
        return g.squeeze(y, dir_axis)
    if mode == "concat":
        if dir_axis == 1:  # (T, 2, N, H) -> (T, N, 2, H) -> (T, N, 2H)
            t = g.op("Transpose", [y], perm=[0, 2, 1, 3])
            return g.op("Reshape", [t, g.ints([0, 0, -1])])
        t = g.op("Transpose", [y], perm=[1, 0, 2])  # (2, N, H) -> (N, 2, H) -> (N, 2H)
        return g.op("Reshape", [t, g.ints([0, -1])])
    fwd, bwd = g.op("Split", [y], n_out=2, axis=dir_axis)
    a, b = g.squeeze(fwd, dir_axis), g.squeeze(bwd, dir_axis)
    if mode == "sum":
        return g.op("Add", [a, b])
    if mode == "mean":  # rnnkit computes (a + b) * 0.5: the same two roundings
        return g.op("Mul", [g.op("Add", [a, b]), g.const(np.array(0.5))])
    if mode == "product":
        return g.op("Mul", [a, b])
    raise ValueError(f"unknown merge mode {mode!r}")


def recurrent_stack(g: Graph, layer, x: str, seq_lens: str, prefix: str,
                    h0: str | None = None, c0: str | None = None):
    """Append a rnnkit ``RecurrentLayer`` (all its layers and directions) to the graph.

    x (T, N, D) time-major; seq_lens (N,) int32; h0 / c0 (L*K, N, H) or None for zeros.
    Returns ``(y, h_n, c_n, h_last)``: y (T, N, F) the merged output of the last layer
    (zeros at padded steps), h_n / c_n (L*K, N, H) in rnnkit's (PyTorch's) state layout (c_n
    None unless LSTM), h_last (K, N, H) the last layer's final states.  One ONNX node per
    layer: ``direction="bidirectional"`` holds both directions.
    """
    mode, H, L, K = layer.mode, layer.hidden_size, layer.num_layers, layer.num_directions
    G = layer.cell.gates
    lstm = mode == "lstm"
    hs, cs = [], []
    inp = y = x
    for li in range(L):
        W, R, B = [], [], []
        for d in range(K):
            w_ih, b_ih, w_hh, b_hh = layer._weights(li, d)
            W.append(_blocks(w_ih, mode))
            R.append(_blocks(w_hh, mode))
            zeros = np.zeros(G * H, dtype=w_ih.dtype)
            B.append(np.concatenate([_blocks(b_ih if b_ih is not None else zeros, mode),
                                     _blocks(b_hh if b_hh is not None else zeros, mode)]))
        name = f"{prefix}.l{li}"
        init_h = init_c = ""
        if h0 is not None:
            init_h = h0 if L == 1 else g.op("Slice", [h0, g.ints([li * K]), g.ints([(li + 1) * K]),
                                                      g.ints([0])])
        if lstm and c0 is not None:
            init_c = c0 if L == 1 else g.op("Slice", [c0, g.ints([li * K]), g.ints([(li + 1) * K]),
                                                      g.ints([0])])
        inputs = [inp, g.const(np.stack(W), f"{name}.W"), g.const(np.stack(R), f"{name}.R"),
                  g.const(np.stack(B), f"{name}.B"), seq_lens, init_h]
        attrs = {"hidden_size": H, "direction": "bidirectional" if K == 2 else "forward"}
        if mode == "gru":
            attrs["linear_before_reset"] = 1 if layer.reset_after else 0
        elif mode == "rnn":
            attrs["activations"] = ["Relu" if layer.nonlinearity == "relu" else "Tanh"] * K
        if lstm:
            inputs.append(init_c)
        while inputs and inputs[-1] == "":  # trailing optional inputs are left out
            inputs.pop()
        outs = g.op(_OP[mode], inputs, n_out=3 if lstm else 2, name=name, **attrs)
        y_l, h_l = outs[0], outs[1]
        hs.append(h_l)
        if lstm:
            cs.append(outs[2])
        inp = merge(g, y_l, 1, K, layer.merge_mode)
        y = inp
    h_n = hs[0] if L == 1 else g.op("Concat", hs, axis=0)
    c_n = None
    if lstm:
        c_n = cs[0] if L == 1 else g.op("Concat", cs, axis=0)
    return y, h_n, c_n, hs[-1]
