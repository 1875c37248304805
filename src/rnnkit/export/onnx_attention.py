"""The decoder step of a seq2seq model with attention as an ONNX graph (Luong et al. 2015,
input feeding): the standard recurrent operators for the stack over one step, the attention
(additive or general) and the combination in plain ONNX operators.  Shapes: N batch, S source
time, F memory features (K*H), H hidden, L layers, V target vocabulary."""

from __future__ import annotations

import numpy as np

from ._onnx_graph import Graph, recurrent_stack
from .onnx_format import _embed, _int64, _state_io, _state_out


def attention_decoder(model, metadata, dtype):
    """One decoder step with attention and input feeding (Luong et al. 2015), T = 1:

    ids (N, 1), h0[, c0] (L, N, H), feed (N, H) the previous attentional vector (zeros at
    the first step), memory (N, S, F) and src_lengths (N,) from the encoder
    -> log_probs (N, 1, V), h_n[, c_n], feed_n (N, H), alpha (N, S) the attention weights.
    """
    dec, att = model.decoder, model.blocks["attention"]
    H = dec.hidden_size
    F = model.encoder.output_size
    g = Graph("rnnkit_seq2seq_attention_decoder", dtype)
    ids = g.input("ids", _int64(), ["N", 1])
    h0, c0 = _state_io(g, dec)
    feed = g.input("feed", g.elem, ["N", H])
    memory = g.input("memory", g.elem, ["N", "S", F])
    src_lengths = g.input("src_lengths", _int64(), ["N"])
    y = _embed(g, model.tgt_embed.params["weight"], g.op("Transpose", [ids], perm=[1, 0]),
               "embed")  # (1, N, E)
    x = g.op("Concat", [y, g.unsqueeze(feed, 0)], axis=2)  # input feeding: [y_t, h~_{t-1}]
    out, h_n, c_n, _ = recurrent_stack(g, dec, x, "", "decoder", h0, c0)
    q = g.squeeze(out, 0)  # (N, H): the top layer's state is the query
    p = att.params
    if att.kind == "additive":  # e_s = v . tanh(W_k m_s + W_q q)
        keys = g.op("MatMul", [memory, g.const(p["key_weight"].T, "attention.key_weight_t")])
        qp = g.op("MatMul", [q, g.const(p["query_weight"].T, "attention.query_weight_t")])
        e = g.op("MatMul", [g.op("Tanh", [g.op("Add", [keys, g.unsqueeze(qp, 1)])]),
                            g.const(p["v"], "attention.v")])
    else:  # e_s = q . (W_a m_s)
        keys = g.op("MatMul", [memory, g.const(p["weight"].T, "attention.weight_t")])
        e = g.squeeze(g.op("MatMul", [keys, g.unsqueeze(q, 2)]), 2)
    S = g.op("Gather", [g.op("Shape", [memory]), g.const(np.array(1, dtype=np.int64))], axis=0)
    steps = g.op("Range", [g.const(np.array(0, dtype=np.int64)), S,
                           g.const(np.array(1, dtype=np.int64))])
    valid = g.op("Less", [g.unsqueeze(steps, 0), g.unsqueeze(src_lengths, 1)])  # (N, S)
    e = g.op("Where", [valid, e, g.const(np.array(-np.inf))])  # padding gets weight 0
    alpha = g.op("Softmax", [e], axis=-1, outputs=["alpha"], name="alpha_out")
    ctx = g.squeeze(g.op("MatMul", [g.unsqueeze(alpha, 1), memory]), 1)  # (N, F)
    ht = g.op("Tanh", [g.linear(g.op("Concat", [ctx, q], axis=1),
                                model.blocks["attn_combine"].params, "attn_combine")])
    logp = g.op("LogSoftmax", [g.linear(ht, model.out.params, "out")], axis=-1)
    g.output(g.identity(g.unsqueeze(logp, 1), "log_probs"), g.elem,
             ["N", 1, model.config.tgt_vocab_size])
    _state_out(g, dec, h_n, c_n)
    g.output(g.identity(ht, "feed_n"), g.elem, ["N", H])
    g.output(alpha, g.elem, ["N", "S"])
    return g.model(metadata, doc="one decoder step with attention: ids (N x 1), h0[, c0], "
                                 "feed, memory, src_lengths -> log_probs, h_n[, c_n], feed_n, "
                                 "alpha")
