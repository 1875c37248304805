"""The vanishing (and exploding) gradient, measured: ‖∂L_T/∂h_t‖ against the distance T − t.

A loss is put on the last step T of a sequence only; the hand-written step backward of the
reference cells (:mod:`rnnkit.cells`) carries it back through time, and the gradient with
respect to the hidden state h_t is read at every step on the way.  For a plain tanh RNN its norm falls geometrically with the distance (the
recurrent Jacobian's norm is usually below 1); gated cells keep it far longer.

Shapes: N sequences, T time, D input, E embedding, H hidden, L layers, V vocabulary.

Also here: :func:`lm_parts`, the one place that reads a language model's weights into the
readable NumPy reference stack — :mod:`rnnkit.lm.explain` uses it too — so that what these
tools show never depends on the fused kernels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .cells import CELLS

_RNN_KEY = re.compile(r"^(.*?)((weight|bias)_(ih|hh)_l(\d+)(_reverse)?)$")


@dataclass
class LMParts:
    """A language model's pieces on the reference path (float64 copies).

    embedding (V, E); rnn a :class:`ReferenceStack`; out_weight (V, H), out_bias (V,) or None.
    """

    embedding: np.ndarray
    rnn: object
    out_weight: np.ndarray | None
    out_bias: np.ndarray | None
    cell: str
    head: object = None  # the model's own output head (forward(h, y) / backward), if it has one
    model_dtype: object = np.float64  # the dtype the head computes in


def _find(params: dict, suffix: str):
    hits = [k for k in params if k == suffix or k.endswith("." + suffix)]
    return params[hits[0]] if len(hits) == 1 else None


class ReferenceStack:
    """A unidirectional stack of L recurrent layers run step by step with the reference cells
    of :mod:`rnnkit.cells` (their ``step`` / ``step_backward``), in float64 by default.

    params: PyTorch's names (``weight_ih_l0``, ``bias_hh_l1`` ...), the layout every rnnkit
    recurrent layer stores.  Kept apart from the layers' drivers on purpose: what these tools
    show is the textbook recurrence, whatever fast paths the layers take.
    """

    def __init__(self, cell: str, params: dict, nonlinearity="tanh", reset_after=True,
                 dtype=np.float64):
        from .cells import make_cell

        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}: expected one of {', '.join(CELLS)}")
        self.mode = cell
        self.cell = make_cell(cell, nonlinearity=nonlinearity, reset_after=reset_after)
        self.dtype = np.dtype(dtype)
        self.params = {k: np.asarray(v, dtype=self.dtype) for k, v in params.items()}
        self.num_layers = 1 + max(int(_RNN_KEY.match(k).group(5)) for k in self.params)
        self.hidden_size = self.params["weight_hh_l0"].shape[1]
        self.input_size = self.params["weight_ih_l0"].shape[1]

    @classmethod
    def from_layer(cls, layer, dtype=np.float64) -> ReferenceStack:
        """The same weights as a unidirectional rnnkit ``RecurrentLayer``."""
        if getattr(layer, "bidirectional", False):
            raise ValueError("the gradient-flow measure needs a unidirectional recurrent layer")
        return cls(layer.mode, layer.params, getattr(layer, "nonlinearity", "tanh"),
                   getattr(layer, "reset_after", True), dtype)

    def weights(self, layer: int):
        p = self.params
        return (p[f"weight_ih_l{layer}"], p.get(f"bias_ih_l{layer}"), p[f"weight_hh_l{layer}"],
                p.get(f"bias_hh_l{layer}"))

    def forward(self, x):
        """x (N, T, D) -> per layer a dict: ``out`` (T, N, H) the state after each step,
        ``caches`` (the cell's step caches), ``c`` (T, N, H) LSTM cells after each step or None.
        """
        x = np.asarray(x, dtype=self.dtype)
        N, T, D = x.shape
        if D != self.input_size:
            raise ValueError(f"x must have shape (N, T, {self.input_size}), got {x.shape}")
        inp = x.transpose(1, 0, 2)
        H = self.hidden_size
        layers = []
        for layer in range(self.num_layers):
            w_ih, b_ih, w_hh, b_hh = self.weights(layer)
            xp = inp @ w_ih.T
            if b_ih is not None:
                xp = xp + b_ih
            h = np.zeros((N, H), dtype=self.dtype)
            c = np.zeros((N, H), dtype=self.dtype) if self.cell.has_cell else None
            out = np.empty((T, N, H), dtype=self.dtype)
            cs = np.empty((T, N, H), dtype=self.dtype) if c is not None else None
            caches = []
            for t in range(T):
                h, c, cache = self.cell.step(xp[t], h, c, w_hh, b_hh)
                out[t] = h
                if cs is not None:
                    cs[t] = c
                caches.append(cache)
            layers.append({"out": out, "c": cs, "caches": caches})
            inp = out
        return layers

    def backward_layer(self, layer: int, states: dict, g, record=False):
        """BPTT through one layer given dL/d(its outputs) g (T, N, H).

        Returns dL/d(its inputs) (T, N, D) and, with ``record``, dL/dh_t (T, N, H): the total
        gradient on the state after each step (its output now plus everything later)."""
        w_ih, _, w_hh, _ = self.weights(layer)
        T, N, H = g.shape
        dxp = np.empty((T, N, w_hh.shape[0]), dtype=self.dtype)
        seen = np.empty((T, N, H), dtype=self.dtype) if record else None
        dh = np.zeros((N, H), dtype=self.dtype)
        dc = np.zeros((N, H), dtype=self.dtype) if self.cell.has_cell else None
        for t in range(T - 1, -1, -1):
            dh_t = dh + g[t]
            if record:
                seen[t] = dh_t
            dxp[t], dh, dc, _ = self.cell.step_backward(dh_t, dc, states["caches"][t], w_hh)
        return dxp @ w_ih, seen


def lm_parts(model, dtype=np.float64) -> LMParts:
    """The weights of a language model (``rnnkit.lm.bundle.load_model(DIR).model``) on the
    reference path in ``dtype``.

    Reads only the flat ``params`` dict and the config, so it survives changes to how the
    model class arranges its blocks.  ValueError if the model is not an
    embedding -> RNN/GRU/LSTM -> linear language model.
    """
    params = getattr(model, "params", None)
    config = getattr(model, "config", None)
    if not isinstance(params, dict) or config is None:
        raise ValueError("not a language model: it has no params/config")
    emb = _find(params, "embed.weight")
    if emb is None:
        raise ValueError("not a language model: no embedding matrix (embed.weight)")
    rnn_params, prefix = {}, None
    for k, v in params.items():
        m = _RNN_KEY.match(k)
        if m and (prefix is None or m.group(1) == prefix):
            prefix = m.group(1)
            rnn_params[m.group(2)] = v
    if not rnn_params or any(k.endswith("_reverse") for k in rnn_params):
        raise ValueError("not a left-to-right recurrent language model")
    stack = ReferenceStack(getattr(config, "cell", "lstm"), rnn_params,
                           getattr(config, "nonlinearity", "tanh"),
                           getattr(config, "reset_after", True), dtype)
    if stack.input_size != emb.shape[1]:
        raise ValueError("language model layers do not fit together (embedding, RNN)")
    # The output layer: the model's own head where it has one (full, tied or adaptive
    # softmax: forward(h, y) -> nll, backward), else a plain out.weight / out.bias.
    head = getattr(model, "head", None)
    if not (callable(getattr(head, "forward", None)) and callable(getattr(head, "backward", None))):
        head = None
    out_w, out_b = _find(params, "out.weight"), _find(params, "out.bias")
    if out_w is not None and out_w.shape[1] != stack.hidden_size:
        out_w = None
    if head is None and out_w is None:
        raise ValueError("language model output layer not understood (no out.weight, no head)")
    return LMParts(np.asarray(emb, dtype=dtype), stack,
                   None if out_w is None else np.asarray(out_w, dtype=dtype),
                   None if out_b is None or out_w is None else np.asarray(out_b, dtype=dtype),
                   stack.mode, head, np.asarray(emb).dtype)


def state_grads(rnn, x, dh_last, layer=None, states=None):
    """dL/dh_t (N, T, H) of one layer when dL/dh_T = ``dh_last`` at the top layer's last step.

    rnn: a :class:`ReferenceStack` or a unidirectional rnnkit ``RecurrentLayer`` (its weights
    are run on the reference cells); x (N, T, D); dh_last (N, H), the gradient injected on the
    top layer's output at step T only.  ``layer`` (0-based, default the top one) picks whose
    hidden state h_t is read; ``states``: the stack's ``forward(x)`` if already run.  The
    backward is the hand-written one of the cells, the layers above the chosen one first.
    Returns float64 (N, T, H).
    """
    stack = rnn if isinstance(rnn, ReferenceStack) else ReferenceStack.from_layer(rnn)
    L = stack.num_layers
    layer = L - 1 if layer is None else int(layer)
    if not 0 <= layer < L:
        raise ValueError(f"layer must lie in [0, {L}), got {layer}")
    states = stack.forward(x) if states is None else states
    T, N, H = states[-1]["out"].shape
    g = np.zeros((T, N, H), dtype=stack.dtype)
    g[-1] = dh_last
    for upper in range(L - 1, layer, -1):
        g, _ = stack.backward_layer(upper, states[upper], g)
    _, seen = stack.backward_layer(layer, states[layer], g, record=True)
    return seen.transpose(1, 0, 2).astype(np.float64)


def lm_state_grads(parts: LMParts, inputs, targets, layer=None):
    """dL_T/dh_t (N, T, H) for a language model, L_T = −log p(targets | inputs[:, :T]) at the
    last step only; inputs (N, T) token ids, targets (N,) the token after each sequence."""
    inputs = np.asarray(inputs)
    targets = np.asarray(targets)
    x = parts.embedding[inputs]
    states = parts.rnn.forward(x)
    h_T = states[-1]["out"][-1]
    if parts.head is not None:  # the model's head in its own dtype: −log p(target) per row
        dtype = parts.model_dtype
        _, cache = parts.head.forward(h_T.astype(dtype), targets)
        dh_last, _ = parts.head.backward(np.ones(len(targets), dtype=dtype), cache)
        dh_last = np.asarray(dh_last, dtype=np.float64)
    else:
        logits = h_T @ parts.out_weight.T
        if parts.out_bias is not None:
            logits = logits + parts.out_bias
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(targets)), targets] -= 1.0  # d(−log softmax)/dlogits, one loss per row
        dh_last = p @ parts.out_weight
    return state_grads(parts.rnn, x, dh_last, layer, states)


def norms_by_distance(grads) -> np.ndarray:
    """Mean over sequences of ‖dL_T/dh_t‖, indexed by the distance T − t (0 .. T−1).

    grads (N, T, H) -> (T,)."""
    norms = np.linalg.norm(np.asarray(grads, dtype=np.float64), axis=2)  # (N, T)
    return norms.mean(axis=0)[::-1].copy()


def sample_windows(ids, length: int, count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``count`` windows of ``length`` inputs from a token stream ids (M,), each with the token
    that follows: ``(inputs (count, length), targets (count,))``."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size < length + 1:
        raise ValueError(f"the text has {ids.size} tokens, fewer than --length + 1 = {length + 1}")
    starts = rng.integers(0, ids.size - length, size=count)
    idx = starts[:, None] + np.arange(length)[None, :]
    return ids[idx], ids[starts + length]


def lm_gradflow(parts: LMParts, ids, length: int, count: int = 64, seed: int = 0,
                layer=None, batch: int = 32) -> np.ndarray:
    """Mean ‖dL_T/dh_t‖ by distance (length,) over ``count`` windows of the stream ``ids``."""
    rng = np.random.default_rng(seed)
    inputs, targets = sample_windows(ids, length, count, rng)
    total = np.zeros(length)
    for s in range(0, count, batch):
        g = lm_state_grads(parts, inputs[s : s + batch], targets[s : s + batch], layer)
        total += norms_by_distance(g) * g.shape[0]
    return total / count


def plot(result: dict, path, title: str = "") -> None:
    """``{"distance": [...], "models": {name: [norms]}}`` as a log-scale PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    d = np.asarray(result["distance"])
    colours = {}
    for name, ys in result["models"].items():
        ys = np.asarray(ys, dtype=np.float64)
        # One colour per cell; an untrained ("fresh") model dashed beside its trained twin.
        key = name.split()[0]
        style = dict(ls="--", lw=1.4) if "fresh" in name else dict(ls="-", lw=2.0)
        line, = ax.plot(d, np.where(ys > 0, ys, np.nan), label=name, color=colours.get(key), **style)
        colours.setdefault(key, line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("distance T − t (steps back from the loss)")
    ax.set_ylabel("mean ‖∂L_T / ∂h_t‖")
    ax.set_title(title or "How far back the gradient reaches")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
