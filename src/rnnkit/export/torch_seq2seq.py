"""The generated PyTorch module of a seq2seq model (see :mod:`.torch_source`): encoder,
bridge and decoder; with attention (Luong et al. 2015, input feeding) a decoder ``step``
whose state, attentional vector and encoder memory are passed explicitly."""

from __future__ import annotations

from ._meta import attention_kind
from .torch_source import _decode_method, _rnn_expr


def _bridge_code(model):
    """(the bridge's constructor lines, its method, the expression that turns the encoder's
    final ``state`` into the decoder's initial state tuple)."""
    c, enc = model.config, model.encoder
    lstm = c.cell == "lstm"
    L, K, H = enc.num_layers, enc.num_directions, c.hidden_size
    if not model.uses_bridge:
        return "", "", "state if isinstance(state, tuple) else (state,)"
    init = f"\n        self.bridge_h = nn.Linear({K * H}, {H})"
    ret = "torch.tanh(self.bridge_h(side(state[0]))), self.bridge_c(side(state[1]))"
    if lstm:
        init += f"\n        self.bridge_c = nn.Linear({K * H}, {H})"
    else:
        ret = "(torch.tanh(self.bridge_h(side(state))),)"
    method = f'''
    def bridged(self, state):
        """The encoder's final state (L*K, N, H) -> the decoder's initial state, a tuple
        (h0[, c0]): each layer's directions side by side (L, N, K*H), then the bridge."""
        side = lambda s: s.view({L}, {K}, -1, {H}).permute(0, 2, 1, 3).reshape({L}, -1, {K * H})
        return {ret}
'''
    return init, method, "self.bridged(state)"


def seq2seq_part(model):
    """(title, usage, class source, class name, recurrent layers) of a seq2seq model."""
    if attention_kind(model):
        return _seq2seq_attention(model)
    c, enc, dec = model.config, model.encoder, model.decoder
    lstm = c.cell == "lstm"
    L, K, H = enc.num_layers, enc.num_directions, c.hidden_size
    bridge_init, bridge_method, bridged = _bridge_code(model)
    usage = ("    state = net.encode(src, src_lengths)          # (h0, c0) or (h0,): (L, N, H)\n"
             "    log_probs, *state = net.decode(ids, lengths, *state)   # a step: T = 1\n")
    body = f'''

class Seq2Seq(nn.Module):
    """Encoder {enc.mode.upper()} x {L}{" (bidirectional, bridged)" if K == 2 else ""} -> decoder {dec.mode.upper()} x {L} -> log-softmax over {c.tgt_vocab_size} target tokens.
    The decoder starts from <eos> (id 2), which also ends a target."""

    def __init__(self):
        super().__init__()
        self.src_embed = nn.Embedding({c.src_vocab_size}, {c.embed_dim})
        self.encoder = {_rnn_expr(enc)}{bridge_init}
        self.tgt_embed = nn.Embedding({c.tgt_vocab_size}, {c.embed_dim})
        self.decoder = {_rnn_expr(dec)}
        self.out = nn.Linear({H}, {c.tgt_vocab_size})

    def encode(self, ids, lengths):
        """Source ids (N, S), lengths (N,) -> the decoder's initial state, a tuple (h0[, c0])."""
        _, state = run_rnn(self.encoder, self.src_embed(ids), lengths)
        return {bridged}
{bridge_method}{_decode_method("decode", "tgt_embed", "decoder", lstm)}
    def forward(self, src, src_lengths, tgt_in, tgt_lengths):
        """Teacher forcing: log_probs (N, M, V) of the targets after inputs tgt_in (N, M)."""
        return self.decode(tgt_in, tgt_lengths, *self.encode(src, src_lengths))[0]
'''
    return "Sequence-to-sequence model", usage, body, "Seq2Seq", [enc, dec]


def _attention_code(att, M, H):
    """(the attention's constructor line, the lines of ``step`` that score the memory (N, S, M)
    against the query q (N, H) into e (N, S)) for an additive or general attention."""
    if att.kind == "additive":
        A = att.attn_size
        init = (f"self.attention = Attention(key_weight=({A}, {M}), "
                f"query_weight=({A}, {H}), v=({A},))")
        scores = ("a = self.attention  # e_s = v . tanh(W_k m_s + W_q q)\n"
                  "        e = torch.tanh(memory @ a.key_weight.T"
                  " + (q @ a.query_weight.T)[:, None, :]) @ a.v")
    else:
        init = f"self.attention = Attention(weight=({H}, {M}))"
        scores = ("# e_s = q . (W_a m_s)\n"
                  "        e = ((memory @ self.attention.weight.T) @ q[:, :, None])[:, :, 0]")
    return init, scores


def _seq2seq_attention(model):
    """Seq2seq with attention and input feeding (Luong et al. 2015): stepped by hand."""
    # Long on purpose: most of it is the generated module's source, kept as one template so
    # a reader sees the whole emitted class in one place.
    c, enc, dec = model.config, model.encoder, model.decoder
    att = model.blocks["attention"]
    L, K, H = enc.num_layers, enc.num_directions, c.hidden_size
    bridge_init, bridge_method, bridged = _bridge_code(model)
    att_init, scores = _attention_code(att, K * H, H)
    usage = ("    state, memory = net.encode(src, src_lengths)   # state: (h0, c0) or (h0,)\n"
             f"    feed = torch.zeros(N, {H})                    # ids start with <eos> (2)\n"
             "    log_probs, state, feed, alpha = net.step(ids, state, feed, memory, src_lengths)\n")
    body = f'''

class Attention(nn.Module):
    """The attention's parameters (shapes by name); the scores are computed in ``step``."""

    def __init__(self, **shapes):
        super().__init__()
        for name, shape in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.zeros(shape)))


class Seq2SeqAttention(nn.Module):
    """Encoder {enc.mode.upper()} x {L}{" (bidirectional, bridged)" if K == 2 else ""} -> decoder {dec.mode.upper()} x {L} with {att.kind} attention
    and input feeding -> log-softmax over {c.tgt_vocab_size} target tokens.
    The decoder starts from <eos> (id 2), which also ends a target."""

    def __init__(self):
        super().__init__()
        self.src_embed = nn.Embedding({c.src_vocab_size}, {c.embed_dim})
        self.encoder = {_rnn_expr(enc)}{bridge_init}
        self.tgt_embed = nn.Embedding({c.tgt_vocab_size}, {c.embed_dim})
        self.decoder = {_rnn_expr(dec)}
        {att_init}
        self.attn_combine = nn.Linear({K * H + H}, {H})
        self.out = nn.Linear({H}, {c.tgt_vocab_size})

    def encode(self, ids, lengths):
        """Source ids (N, S), lengths (N,) -> (the decoder's initial state, a tuple (h0[, c0])
        of (L, N, H); memory (N, S, K*H), the encoder's outputs)."""
        memory, state = run_rnn(self.encoder, self.src_embed(ids), lengths)
        return {bridged}, memory
{bridge_method}
    def step(self, ids, state, feed, memory, src_lengths):
        """One decoder step: ids (N,) the previous tokens, state, feed (N, H) the previous
        attentional vector (zeros at the start), memory and src_lengths (N,) from ``encode``
        -> (log_probs (N, V), state, feed, alpha (N, S) the attention weights)."""
        x = torch.cat([self.tgt_embed(ids), feed], dim=1)[:, None]  # input feeding
        ones = torch.ones(len(ids), dtype=torch.int64)
        # nn.LSTM takes the pair (h, c), the other cells h alone
        y, state = run_rnn(self.decoder, x, ones, state if len(state) == 2 else state[0])
        state = state if isinstance(state, tuple) else (state,)
        q = y[:, 0]  # the top layer's state is the query
        {scores}
        valid = torch.arange(memory.shape[1])[None, :] < src_lengths[:, None]
        alpha = torch.softmax(e.masked_fill(~valid, float("-inf")), dim=1)
        ctx = (alpha[:, None, :] @ memory)[:, 0]
        feed = torch.tanh(self.attn_combine(torch.cat([ctx, q], dim=1)))
        return torch.log_softmax(self.out(feed), dim=-1), state, feed, alpha

    def forward(self, src, src_lengths, tgt_in):
        """Teacher forcing: log_probs (N, M, V) after the inputs tgt_in (N, M)."""
        state, memory = self.encode(src, src_lengths)
        feed = memory.new_zeros(len(src), {H})
        out = []
        for t in range(tgt_in.shape[1]):
            lp, state, feed, _ = self.step(tgt_in[:, t], state, feed, memory, src_lengths)
            out.append(lp)
        return torch.stack(out, dim=1)
'''
    return "Sequence-to-sequence model with attention", usage, body, "Seq2SeqAttention", \
        [enc, dec]
