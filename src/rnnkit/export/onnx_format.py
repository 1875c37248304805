"""rnnkit models as ONNX graphs (the ``onnx`` package's helper API; no PyTorch involved).

The exported interface is a contract (README, "Export"); batch-major, with these names:

- ``language_model`` -> ``model.onnx``: inputs ``ids`` (int64, N x T), ``lengths`` (int64, N),
  ``h0`` (and ``c0`` for LSTM) (L x N x H); outputs ``log_probs`` (N x T x V), ``h_n``
  (and ``c_n``).  One graph serves scoring and generation: a generation step is a call with
  T = 1 and the state of the previous call.
- ``classifier`` -> ``model.onnx``: ``ids``, ``lengths`` -> ``log_probs`` (N x C).
- ``tagger`` -> ``model.onnx``: ``ids``, ``lengths`` -> ``log_probs`` (N x T x C).
- ``seq2seq`` -> ``encoder.onnx``: ``ids``, ``lengths`` (the source) -> ``h0`` (``c0``), the
  decoder's initial state; ``decoder.onnx``: the language-model interface over the target
  vocabulary (a step is T = 1; the first input is ``<eos>``, the start symbol).  With
  attention the encoder also outputs ``memory`` and the decoder is one step
  (:mod:`.onnx_attention`).
- ``generator`` -> ``condition.onnx``: ``cond`` (int64 class ids N, or float N x Dc) -> ``h0``
  (``c0``); ``decoder.onnx`` as for seq2seq.

Steps at or past a row's length hold values of no meaning (the log-softmax of the output
bias); the states are those at each row's last valid step.  Float type: the model's (float32
or float64) unless ``dtype`` says otherwise.  Shapes: N batch, T time, V vocabulary, C labels, L layers, H hidden, K directions.
"""

from __future__ import annotations

import numpy as np

from ._meta import attention_kind
from ._onnx_graph import Graph, merge, recurrent_stack

FILES = {"language_model": ("model.onnx",), "classifier": ("model.onnx",),
         "tagger": ("model.onnx",), "seq2seq": ("encoder.onnx", "decoder.onnx"),
         "generator": ("condition.onnx", "decoder.onnx")}


def _int64():
    from onnx import TensorProto

    return TensorProto.INT64


def _ids_inputs(g: Graph):
    """``ids`` (N, T) and ``lengths`` (N,) -> (ids time-major (T, N), seq_lens int32 (N,))."""
    from onnx import TensorProto

    ids = g.input("ids", _int64(), ["N", "T"])
    lengths = g.input("lengths", _int64(), ["N"])
    return g.op("Transpose", [ids], perm=[1, 0]), g.op("Cast", [lengths], to=TensorProto.INT32)


def _embed(g: Graph, weight: np.ndarray, ids_tm: str, prefix: str) -> str:
    return g.op("Gather", [g.const(weight, f"{prefix}.weight"), ids_tm])  # (T, N, E)


def _state_io(g: Graph, rnn, names=("h0", "c0")):
    K = rnn.num_directions
    dims = [rnn.num_layers * K, "N", rnn.hidden_size]
    h0 = g.input(names[0], g.elem, dims)
    c0 = g.input(names[1], g.elem, dims) if rnn.mode == "lstm" else None
    return h0, c0


def _state_out(g: Graph, rnn, h_n: str, c_n: str | None, names=("h_n", "c_n")) -> None:
    dims = [rnn.num_layers * rnn.num_directions, "N", rnn.hidden_size]
    g.output(g.identity(h_n, names[0]), g.elem, dims)
    if c_n is not None:
        g.output(g.identity(c_n, names[1]), g.elem, dims)


def full_head(out_params: dict):
    """log_softmax(y W^T + b) of a Linear (V, H): the output of every decoder but a language
    model with another head."""
    def head(g: Graph, y: str) -> str:
        return g.op("LogSoftmax", [g.linear(y, out_params, "out")], axis=-1)
    return head


def lm_head(model):
    """The language model's output head (full, tied or adaptive softmax) as graph nodes:
    y (N, T, H) -> log-probabilities (N, T, V)."""
    c, p = model.config, model.out.params
    if getattr(c, "tie_embeddings", False):
        def tied(g: Graph, y: str) -> str:
            # logits = (y proj^T) E^T + b with E the embedding itself: stored once, in Gather
            u = g.op("MatMul", [y, g.const(p["proj"].T, "out.proj_t")]) if "proj" in p else y
            z = g.op("MatMul", [u, g.op("Transpose", ["embed.weight"], perm=[1, 0])])
            return g.op("LogSoftmax", [g.op("Add", [z, g.const(p["bias"], "out.bias")])], axis=-1)
        return tied
    if getattr(c, "softmax", "full") == "adaptive":
        layer = model.out.layer
        c0 = layer.shortlist

        def adaptive(g: Graph, y: str) -> str:
            # log p(w) = head[w] for w < c_0; head[c_0 + i] + log_softmax(O_i P_i y)[w - c_i]
            # for w in cluster i (Grave et al. 2017): every V log-probabilities, normalised
            head = {"weight": p["head.weight"], "bias": p.get("head.bias")}
            hz = g.op("LogSoftmax", [g.linear(y, head, "out.head")], axis=-1)

            def cols(a, b):
                return g.op("Slice", [hz, g.ints([a]), g.ints([b]), g.ints([2])])

            parts = [cols(0, c0)]
            for i in range(layer.n_clusters):
                u = g.op("MatMul", [y, g.const(p[f"tail.{i}.proj"].T, f"out.tail.{i}.proj_t")])
                zt = g.op("MatMul", [u, g.const(p[f"tail.{i}.out"].T, f"out.tail.{i}.out_t")])
                parts.append(g.op("Add", [g.op("LogSoftmax", [zt], axis=-1),
                                          cols(c0 + i, c0 + i + 1)]))
            return g.op("Concat", parts, axis=-1)
        return adaptive
    return full_head(p)


def decoder_graph(name: str, dtype, embed_w, rnn, head, vocab_size: int, metadata: dict):
    """The language-model interface: ids, lengths, h0[, c0] -> log_probs, h_n[, c_n].

    ``head(g, y)``: y (N, T, H) -> log-probabilities (N, T, V)."""
    g = Graph(name, dtype)
    ids_tm, seq_lens = _ids_inputs(g)
    h0, c0 = _state_io(g, rnn)
    y, h_n, c_n, _ = recurrent_stack(g, rnn, _embed(g, embed_w, ids_tm, "embed"), seq_lens,
                                     "rnn", h0, c0)
    logp = head(g, g.op("Transpose", [y], perm=[1, 0, 2]))
    g.output(g.identity(logp, "log_probs"), g.elem, ["N", "T", vocab_size])
    _state_out(g, rnn, h_n, c_n)
    return g.model(metadata, doc="ids, lengths, h0[, c0] -> log_probs, h_n[, c_n]; a "
                                 "generation step is a call with T = 1")


def _language_model(model, metadata, dtype):
    return {"model.onnx": decoder_graph("rnnkit_language_model", dtype,
                                        model.embed.params["weight"], model.rnn,
                                        lm_head(model), model.config.vocab_size, metadata)}


def _classifier(model, metadata, dtype):
    g = Graph("rnnkit_classifier", dtype)
    ids_tm, seq_lens = _ids_inputs(g)
    rnn = model.rnn
    y, _, _, h_last = recurrent_stack(g, rnn, _embed(g, model.embed.params["weight"], ids_tm,
                                                     "embed"), seq_lens, "rnn")
    pooling = model.config.pooling
    if pooling == "last":  # the last layer's final states, directions merged
        pooled = merge(g, h_last, 0, rnn.num_directions, rnn.merge_mode)
    elif pooling == "mean":  # padded steps of y are zeros: the sum runs over valid steps
        total = g.op("ReduceSum", [y, g.ints([0])], keepdims=0)
        n = g.unsqueeze(g.op("Cast", ["lengths"], to=g.elem), 1)
        pooled = g.op("Div", [total, n])
    else:  # max over the valid steps only: padded steps become -inf first
        T = g.op("Gather", [g.op("Shape", [y]), g.const(np.array(0, dtype=np.int64))], axis=0)
        steps = g.op("Range", [g.const(np.array(0, dtype=np.int64)), T,
                               g.const(np.array(1, dtype=np.int64))])
        valid = g.op("Less", [g.unsqueeze(steps, 1), g.unsqueeze("lengths", 0)])  # (T, N)
        masked = g.op("Where", [g.unsqueeze(valid, 2), y, g.const(np.array(-np.inf))])
        pooled = g.op("ReduceMax", [masked], axes=[0], keepdims=0)
    logits = g.linear(pooled, model.out.params, "out")
    g.output(g.op("LogSoftmax", [logits], outputs=["log_probs"], axis=-1), g.elem,
             ["N", model.config.num_classes])
    return {"model.onnx": g.model(metadata, doc="ids, lengths -> log_probs (N x C)")}


def _tagger(model, metadata, dtype):
    g = Graph("rnnkit_tagger", dtype)
    ids_tm, seq_lens = _ids_inputs(g)
    y, _, _, _ = recurrent_stack(g, model.rnn, _embed(g, model.embed.params["weight"], ids_tm,
                                                      "embed"), seq_lens, "rnn")
    logits = g.linear(g.op("Transpose", [y], perm=[1, 0, 2]), model.out.params, "out")
    g.output(g.op("LogSoftmax", [logits], outputs=["log_probs"], axis=-1), g.elem,
             ["N", "T", model.config.num_tags])
    return {"model.onnx": g.model(metadata, doc="ids, lengths -> log_probs (N x T x C)")}


def _encoder(model, metadata, dtype):
    """Source ids -> the decoder's initial state, through the bridge when there is one."""
    g = Graph("rnnkit_seq2seq_encoder", dtype)
    ids_tm, seq_lens = _ids_inputs(g)
    enc = model.encoder
    y, h_n, c_n, _ = recurrent_stack(g, enc, _embed(g, model.src_embed.params["weight"], ids_tm,
                                                    "src_embed"), seq_lens, "encoder")
    L, K, H = enc.num_layers, enc.num_directions, enc.hidden_size
    states = {"h0": h_n, "c0": c_n}
    if model.uses_bridge:
        for key, s in (("h0", h_n), ("c0", c_n)):
            if s is None:
                continue
            # (L*K, N, H) -> (L, K, N, H) -> (L, N, K, H) -> (L, N, K*H): directions side by side
            t = g.op("Transpose", [g.op("Reshape", [s, g.ints([L, K, -1, H])])], perm=[0, 2, 1, 3])
            cat = g.op("Reshape", [t, g.ints([0, 0, -1])])
            blk = "bridge_h" if key == "h0" else "bridge_c"
            z = g.linear(cat, model.blocks[blk].params, blk)
            states[key] = g.op("Tanh", [z]) if key == "h0" else z
    dims = [L, "N", H]
    for key in ("h0", "c0"):
        if states[key] is not None:
            g.output(g.identity(states[key], key), g.elem, dims)
    doc = "ids, lengths (source) -> h0[, c0] (the decoder's initial state)"
    if attention_kind(model):  # the encoder's outputs, what the decoder attends to
        memory = g.op("Transpose", [y], perm=[1, 0, 2], outputs=["memory"], name="memory_out")
        g.output(memory, g.elem, ["N", "S", enc.output_size])
        doc += ", memory (N x S x F, the encoder's outputs)"
    return g.model(metadata, doc=doc)


def _seq2seq(model, metadata, dtype):
    from ._meta import for_graph
    from .onnx_attention import attention_decoder

    enc = _encoder(model, for_graph(metadata, "encoder"), dtype)
    if attention_kind(model):
        return {"encoder.onnx": enc,
                "decoder.onnx": attention_decoder(model, for_graph(metadata, "decoder"), dtype)}
    dec = decoder_graph("rnnkit_seq2seq_decoder", dtype, model.tgt_embed.params["weight"],
                        model.decoder, full_head(model.out.params), model.config.tgt_vocab_size,
                        for_graph(metadata, "decoder"))
    return {"encoder.onnx": enc, "decoder.onnx": dec}


def _condition(model, metadata, dtype):
    """Condition -> the decoder's initial state: h0 = tanh(W_h cond + b_h), c0 = W_c cond + b_c."""
    c = model.config
    g = Graph("rnnkit_generator_condition", dtype)
    L, H = c.num_layers, c.hidden_size
    if c.num_classes:
        cond = g.input("cond", _int64(), ["N"])
    else:
        cond = g.input("cond", g.elem, ["N", c.cond_dim])
    outs = {}
    for key, blk in (("h0", "cond_h"), ("c0", "cond_c")):
        if blk not in model.blocks:
            continue
        p = model.blocks[blk].params
        if c.num_classes:  # one-hot @ W.T is row ``class`` of W.T: a Gather, exactly
            z = g.op("Add", [g.op("Gather", [g.const(p["weight"].T, f"{blk}.weight_t"), cond]),
                             g.const(p["bias"], f"{blk}.bias")])
        else:
            z = g.linear(cond, p, blk)
        if key == "h0":
            z = g.op("Tanh", [z])
        # (N, L*H) -> (N, L, H) -> (L, N, H)
        outs[key] = g.op("Transpose", [g.op("Reshape", [z, g.ints([0, L, H])])], perm=[1, 0, 2])
    for key, v in outs.items():
        g.output(g.identity(v, key), g.elem, [L, "N", H])
    return g.model(metadata, doc="cond -> h0[, c0] (the decoder's initial state)")


def _generator(model, metadata, dtype):
    from ._meta import for_graph

    return {"condition.onnx": _condition(model, for_graph(metadata, "condition"), dtype),
            "decoder.onnx": decoder_graph("rnnkit_generator_decoder", dtype,
                                          model.embed.params["weight"], model.rnn,
                                          full_head(model.out.params), model.config.vocab_size,
                                          for_graph(metadata, "decoder"))}


_BUILDERS = {"language_model": _language_model, "classifier": _classifier, "tagger": _tagger,
             "seq2seq": _seq2seq, "generator": _generator}


def onnx_models(model, kind: str, metadata: dict, dtype=None) -> dict:
    """``{file name: onnx.ModelProto}`` for a model of ``kind``, each checked by
    ``onnx.checker``; ``metadata`` goes into ``metadata_props``.  ``dtype`` (float32 or
    float64; default the model's) is the graph's float type: ONNX Runtime's CPU kernels run
    LSTM/GRU/RNN in float32 only, so a float64 model is exported as float32 to run there."""
    return _BUILDERS[kind](model, metadata, np.dtype(dtype or model.dtype))
