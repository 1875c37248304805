"""The readable Python module that ``--format torch`` writes beside the weights.

The generated file builds a ``torch.nn.Module`` from ``nn.Embedding``, ``nn.RNN/GRU/LSTM``
and ``nn.Linear`` whose ``state_dict`` names are rnnkit's parameter names (rnnkit keeps
PyTorch's own names and gate order), so the weights load with ``load_state_dict`` as they
are.  Ragged batches go through ``pack_padded_sequence``: each row stops at its length and
the reverse direction reads each row backwards from its own last step, as in rnnkit.
The notes' GRU form (``reset_after=False``), which ``torch.nn.GRU`` lacks, gets a small
module of its own in the file.
"""

from __future__ import annotations

import pprint

HEADER = '''"""{title}, exported by rnnkit {version} as a torch.nn.Module (generated file).

Use it without rnnkit (needs torch and safetensors):

    import importlib.util
    spec = importlib.util.spec_from_file_location("exported", "OUT/model.py")
    exported = importlib.util.module_from_spec(spec); spec.loader.exec_module(exported)
    net = exported.load()    # weights from model.safetensors beside this file
{usage}
Shapes: N batch, T time, L layers, K directions, H hidden; ids and lengths are int64.
Steps at or past a row's length hold values of no meaning.
"""

import os

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CONFIG = {config}
DTYPE = torch.{dtype}
'''

RUN_RNN = '''

def run_rnn(rnn, x, lengths, state=None):
    """x (N, T, D), lengths (N,) -> (out (N, T, K*H), zeros past each length; final state).

    Packing stops each row at its length, so the final state is the one at the row's last
    step and the reverse direction starts there."""{notes_branch}
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, state = rnn(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, state
'''

NOTES_BRANCH = '''
    if isinstance(rnn, GRUResetBefore):
        return rnn(x, lengths, state)'''

NOTES_GRU = '''

class GRUResetBefore(nn.Module):
    """The course notes' GRU (Cho et al. 2014): the reset gate scales h before its product,
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), h' = (1 - z) * n + z * h.
    torch.nn.GRU has only the other form; names, shapes and gate order (r, z, n) are its own."""

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.num_directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * self.num_directions
            for d in range(self.num_directions):
                sfx = f"l{layer}" + ("_reverse" if d else "")
                for name, shape in (("weight_ih", (3 * hidden_size, size)),
                                    ("weight_hh", (3 * hidden_size, hidden_size)),
                                    ("bias_ih", (3 * hidden_size,)),
                                    ("bias_hh", (3 * hidden_size,))):
                    self.register_parameter(f"{name}_{sfx}", nn.Parameter(torch.zeros(shape)))

    def forward(self, x, lengths, h0=None):
        """x (N, T, D), lengths (N,) -> (out (N, T, K*H), h_n (L*K, N, H))."""
        N, T, _ = x.shape
        H, K = self.hidden_size, self.num_directions
        steps = torch.arange(T, device=x.device)
        valid = (steps[None, :] < lengths.to(x.device)[:, None])[..., None]  # (N, T, 1)
        if h0 is None:
            h0 = x.new_zeros(self.num_layers * K, N, H)
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(K):
                sfx = f"l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh = getattr(self, f"weight_ih_{sfx}"), getattr(self, f"weight_hh_{sfx}")
                b_ih, b_hh = getattr(self, f"bias_ih_{sfx}"), getattr(self, f"bias_hh_{sfx}")
                xp = x @ w_ih.T + b_ih
                h = h0[layer * K + d]
                out = [None] * T
                # A step past a row's end keeps its state, so the reverse direction, walking
                # from T-1 down, really starts at each row's own last step.
                for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
                    rz = torch.sigmoid(xp[:, t, :2 * H] + h @ w_hh[:2 * H].T + b_hh[:2 * H])
                    r, z = rz[:, :H], rz[:, H:]
                    n = torch.tanh(xp[:, t, 2 * H:] + (r * h) @ w_hh[2 * H:].T + b_hh[2 * H:])
                    h = torch.where(valid[:, t], n + z * (h - n), h)
                    out[t] = h * valid[:, t]
                outs.append(torch.stack(out, dim=1))
                finals.append(h)
            x = torch.cat(outs, dim=-1)
        return x, torch.stack(finals)
'''

FOOTER = '''

def build():
    """The module with untrained weights, in the exported float type."""
    return {cls}().to(DTYPE)


def load(directory=None):
    """The module with the exported weights (``model.safetensors`` in ``directory``,
    by default this file's folder), in eval mode."""
    from safetensors.torch import load_file

    directory = directory or os.path.dirname(os.path.abspath(__file__))
    net = build()
    net.load_state_dict(load_file(os.path.join(directory, "model.safetensors")))
    return net.eval()
'''


def _rnn_expr(layer) -> str:
    """Constructor of the torch module matching a rnnkit RecurrentLayer."""
    D, H, L = layer.input_size, layer.hidden_size, layer.num_layers
    bi = layer.bidirectional
    if layer.mode == "gru" and not layer.reset_after:
        return f"GRUResetBefore({D}, {H}, num_layers={L}, bidirectional={bi})"
    cls = {"rnn": "nn.RNN", "gru": "nn.GRU", "lstm": "nn.LSTM"}[layer.mode]
    extra = f", nonlinearity={layer.nonlinearity!r}" if layer.mode == "rnn" else ""
    return f"{cls}({D}, {H}, num_layers={L}, batch_first=True, bidirectional={bi}{extra})"


FULL_HEAD = "torch.log_softmax(self.out(y), dim=-1)"


def _decode_method(name, embed, rnn, lstm, head=FULL_HEAD) -> str:
    """The language-model interface: ids, lengths, h0[, c0] -> log_probs, h_n[, c_n];
    ``head``: the expression of the log-probabilities from y (N, T, H)."""
    if lstm:
        return f'''
    def {name}(self, ids, lengths, h0=None, c0=None):
        """ids (N, T), lengths (N,), h0 / c0 (L, N, H) or None (zeros)
        -> (log_probs (N, T, V), h_n, c_n)."""
        state = None if h0 is None else (h0, c0)
        y, (h_n, c_n) = run_rnn(self.{rnn}, self.{embed}(ids), lengths, state)
        return {head}, h_n, c_n
'''
    return f'''
    def {name}(self, ids, lengths, h0=None):
        """ids (N, T), lengths (N,), h0 (L, N, H) or None (zeros) -> (log_probs (N, T, V), h_n)."""
        y, h_n = run_rnn(self.{rnn}, self.{embed}(ids), lengths, h0)
        return {head}, h_n
'''


TIED_OUTPUT = '''

class TiedOutput(nn.Module):
    """The output layer tied to the input embedding (Press & Wolf 2017): logits =
    (y proj^T) weight^T + bias, weight the embedding's own (V, E); proj (E, H) only if E != H."""

    def __init__(self, vocab_size, embed_dim, hidden_size):
        super().__init__()
        self.proj = None
        if embed_dim != hidden_size:
            self.proj = nn.Parameter(torch.zeros(embed_dim, hidden_size))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, y, weight):
        u = y if self.proj is None else y @ self.proj.T
        return u @ weight.T + self.bias
'''


def _lm_output(model):
    """(constructor of ``self.out``, log-probabilities expression, extra classes) per head."""
    c = model.config
    if getattr(c, "tie_embeddings", False):
        return (f"TiedOutput({c.vocab_size}, {c.embed_dim}, {c.hidden_size})",
                "torch.log_softmax(self.out(y, self.embed.weight), dim=-1)", TIED_OUTPUT)
    if getattr(c, "softmax", "full") == "adaptive":
        layer = model.out.layer
        return (f"nn.AdaptiveLogSoftmaxWithLoss({c.hidden_size}, {c.vocab_size}, "
                f"cutoffs={list(layer.cutoffs)}, div_value={layer.div_value}, head_bias=True)",
                "self.out.log_prob(y.reshape(-1, y.shape[-1])).view(y.shape[0], y.shape[1], -1)",
                "")
    return f"nn.Linear({c.hidden_size}, {c.vocab_size})", FULL_HEAD, ""


def _language_model(model):
    c, rnn = model.config, model.rnn
    lstm = rnn.mode == "lstm"
    out, head, extra = _lm_output(model)
    usage = ("    log_probs, h_n, c_n = net(ids, lengths, h0, c0)   # h0, c0 (L, N, H) or None"
             if lstm else "    log_probs, h_n = net(ids, lengths, h0)   # h0 (L, N, H) or None")
    usage += "\n    # a generation step: T = 1, lengths all 1, the state of the previous call\n"
    body = f'''{extra}

class LanguageModel(nn.Module):
    """Embedding -> {rnn.mode.upper()} x {rnn.num_layers} -> output head -> log-softmax over {c.vocab_size} tokens."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding({c.vocab_size}, {c.embed_dim})
        self.rnn = {_rnn_expr(rnn)}
        self.out = {out}
{_decode_method("forward", "embed", "rnn", lstm, head)}'''
    return "Language model", usage, body, "LanguageModel", [rnn]


def _classifier(model):
    c, rnn = model.config, model.rnn
    K = rnn.num_directions
    if c.pooling == "last":
        pool = (f"h_n = state[0] if isinstance(state, tuple) else state\n"
                f"        pooled = h_n[-{K}:].transpose(0, 1).reshape(ids.shape[0], -1)"
                f"  # last layer, directions side by side")
    elif c.pooling == "mean":
        pool = "pooled = y.sum(dim=1) / lengths[:, None].to(y.dtype)  # padded steps are zeros"
    else:
        pool = ("valid = torch.arange(y.shape[1])[None, :] < lengths[:, None]\n"
                "        pooled = y.masked_fill(~valid[..., None], float(\"-inf\")).amax(dim=1)")
    body = f'''

class Classifier(nn.Module):
    """Embedding -> {rnn.mode.upper()} x {rnn.num_layers}{" (bidirectional)" if K == 2 else ""} -> {c.pooling} pooling -> Linear -> log-softmax over {c.num_classes} labels."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding({c.vocab_size}, {c.embed_dim})
        self.rnn = {_rnn_expr(rnn)}
        self.out = nn.Linear({K * c.hidden_size}, {c.num_classes})

    def forward(self, ids, lengths):
        """ids (N, T), lengths (N,) -> log_probs (N, labels)."""
        y, state = run_rnn(self.rnn, self.embed(ids), lengths)
        {pool}
        return torch.log_softmax(self.out(pooled), dim=-1)
'''
    return "Sequence classifier", "    log_probs = net(ids, lengths)   # (N, labels)\n", body, \
        "Classifier", [rnn]


def _tagger(model):
    c, rnn = model.config, model.rnn
    K = rnn.num_directions
    body = f'''

class Tagger(nn.Module):
    """Embedding -> {rnn.mode.upper()} x {rnn.num_layers}{" (bidirectional)" if K == 2 else ""} -> Linear -> log-softmax over {c.num_tags} tags per step."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding({c.vocab_size}, {c.embed_dim})
        self.rnn = {_rnn_expr(rnn)}
        self.out = nn.Linear({rnn.output_size}, {c.num_tags})

    def forward(self, ids, lengths):
        """ids (N, T), lengths (N,) -> log_probs (N, T, tags)."""
        y, _ = run_rnn(self.rnn, self.embed(ids), lengths)
        return torch.log_softmax(self.out(y), dim=-1)
'''
    return "Sequence tagger", "    log_probs = net(ids, lengths)   # (N, T, tags)\n", body, \
        "Tagger", [rnn]


def _generator(model):
    c, rnn = model.config, model.rnn
    lstm = c.cell == "lstm"
    L, H = c.num_layers, c.hidden_size
    if c.num_classes:
        vec = (f"v = nn.functional.one_hot(cond, {c.num_classes}).to(self.cond_h.weight.dtype)"
               "  # class ids (N,)")
    else:
        vec = f"v = cond  # vectors (N, {c.cond_dim})"
    to_state = f"lambda a: a.view(-1, {L}, {H}).transpose(0, 1).contiguous()"
    ret = "return layers(torch.tanh(self.cond_h(v))), layers(self.cond_c(v))" if lstm else \
        "return (layers(torch.tanh(self.cond_h(v))),)"
    cond_c = f"\n        self.cond_c = nn.Linear({c.input_dim}, {L * H})" if lstm else ""
    usage = ("    state = net.initial_state(cond)               # (h0, c0) or (h0,): (L, N, H)\n"
             "    log_probs, *state = net.decode(ids, lengths, *state)   # a step: T = 1\n")
    body = f'''

class Generator(nn.Module):
    """Condition -> initial state -> {rnn.mode.upper()} x {L} decoder -> log-softmax over {c.vocab_size} tokens.
    Decoding starts from <eos> (id 2), which also ends a sequence."""

    def __init__(self):
        super().__init__()
        self.cond_h = nn.Linear({c.input_dim}, {L * H}){cond_c}
        self.embed = nn.Embedding({c.vocab_size}, {c.embed_dim})
        self.rnn = {_rnn_expr(rnn)}
        self.out = nn.Linear({H}, {c.vocab_size})

    def initial_state(self, cond):
        """The decoder's initial state, a tuple (h0[, c0]) of (L, N, H)."""
        {vec}
        layers = {to_state}
        {ret}
{_decode_method("decode", "embed", "rnn", lstm)}'''
    return "Conditional generator", usage, body, "Generator", [rnn]


def _seq2seq(model):
    from .torch_seq2seq import seq2seq_part

    return seq2seq_part(model)


_PARTS = {"language_model": _language_model, "classifier": _classifier, "tagger": _tagger,
          "seq2seq": _seq2seq, "generator": _generator}


def module_source(model, kind: str) -> str:
    """The generated module's source for a model of ``kind``."""
    from .. import __version__

    title, usage, body, cls, layers = _PARTS[kind](model)
    notes = any(r.mode == "gru" and not r.reset_after for r in layers)
    config = pprint.pformat({"kind": kind, **_config_dict(model)}, sort_dicts=False, width=88)
    src = HEADER.format(title=title, version=__version__, usage=usage, config=config,
                        dtype=str(model.dtype))
    if notes:
        src += NOTES_GRU
    src += RUN_RNN.format(notes_branch=NOTES_BRANCH if notes else "")
    src += body + FOOTER.format(cls=cls)
    return src


def _config_dict(model) -> dict:
    import dataclasses

    return dataclasses.asdict(model.config)
