"""Many-to-many, different lengths: an encoder-decoder (seq2seq) with teacher forcing,
greedy and beam-search decoding.

Training (teacher forcing)::

    src (N, S) -> Embedding -> encoder RNN (bidirectional by choice) -> final state
    final state -> bridge -> decoder initial state (L, N, H)   [(h, c) for LSTM]
    [<bos>, y1 .. yM] -> Embedding -> decoder RNN -> Linear -> logits (N, M+1, V)
    targets [y1 .. yM, <eos>]; padded steps of either side are masked by ``lengths``.

``<eos>`` doubles as the start symbol (as in fairseq): the decoder never has to emit a
"start", so one special token serves both ends.

The bridge: when the encoder's final state already has the decoder's layout (unidirectional,
same L and H) it is handed over as it is; otherwise (e.g. a bidirectional encoder, K = 2) a
learned map per layer turns the concatenated directions (N, K*H) into the decoder's state:
``h0 = tanh(W_h [h_fwd, h_bwd] + b_h)`` and, for LSTM, ``c0 = W_c [c_fwd, c_bwd] + b_c``.

Attention (``config.attention`` "additive" or "general"; "none", the default of the config
and of every model file written before attention existed, is the plain model above): the
decoder also reads the encoder's outputs at every step, with input feeding (Luong et al.
2015; :mod:`rnnkit.layers.attention_decoder`)::

    memory = encoder outputs (N, S, K*H), both directions side by side
    x_t = [embedding(y_{t-1}), h~_{t-1}] -> decoder stack -> h_t (the query)
    context_t = attention(h_t, memory);  h~_t = tanh(W_c [context_t, h_t] + b_c)
    logits_t = W_out dropout(h~_t) + b_out

The bridge still gives the decoder its initial state.  Extra params: ``attention.*`` and
``attn_combine.*``; the decoder's first layer reads E + H inputs.

Decoding feeds each chosen token back through :mod:`rnnkit.decode`: beam search keeps at
most K hypotheses per sentence; a hypothesis that emits ``<eos>`` leaves the beam (which
shrinks by one), so with K = 1 it is greedy decoding step for step.  The finished hypotheses
are ranked by ``log p / len ** length_penalty`` (len counts the ``<eos>``; 0 = raw
log-probability).

Shapes: N batch, S source time, M target time, E embedding, H hidden, L layers,
K directions, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import decode
from ..layers.attention import KINDS as ATTENTION_KINDS
from ..layers.attention import Attention, Prepared, attention_shapes
from ..layers.attention_decoder import AttentionDecoder
from ..layers.basic import Dropout, Embedding, Linear, log_softmax
from ..layers.decoder import StateBridge
from ._blocks import check_ids, full_lengths, make_rnn
from .base import EOS, Config, recurrent_shapes
from .target import TargetDecoderModel, decoder_io


@dataclass
class Seq2SeqConfig(Config):
    src_vocab_size: int
    tgt_vocab_size: int
    embed_dim: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = False
    dropout: float = 0.0
    max_target_len: int = 100
    dtype: str = "float32"
    seed: int | None = 0
    # "none" for the files written before attention existed (their config has no such key).
    attention: str = "none"

    file_limits = {"max_target_len": 100_000}
    positive = ("embed_dim", "hidden_size", "num_layers", "src_vocab_size", "tgt_vocab_size",
                "max_target_len")

    def check(self):
        if self.tgt_vocab_size <= EOS:
            raise ValueError(f"tgt_vocab_size must include the specials (> {EOS})")
        if not isinstance(self.attention, str) or self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {str(self.attention)[:40]!r}: expected one of "
                             f"{', '.join(ATTENTIONS)}")


ATTENTIONS = ("none", *ATTENTION_KINDS)


class Seq2Seq(TargetDecoderModel):
    """Encoder-decoder.  params: ``src_embed.*``, ``encoder.*``, ``bridge_h.*``
    (``bridge_c.*``), ``tgt_embed.*``, ``decoder.*``, ``out.*``; with attention also
    ``attention.*`` and ``attn_combine.*``."""

    config_class = Seq2SeqConfig
    kind = "seq2seq"
    decoder_io = staticmethod(decoder_io)

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = c = config.validate()
        rng = np.random.default_rng(c.seed)
        dt = np.dtype(c.dtype)
        self.src_embed = Embedding(c.src_vocab_size, c.embed_dim, dtype=dt, seed=rng)
        self.encoder = make_rnn(c, c.embed_dim, rng, bidirectional=c.bidirectional)
        self.attention = self.attn_dec = None
        if c.attention == "none":
            self.dec = self._decoder(c, rng, c.tgt_vocab_size, ("tgt_embed", "decoder", "out"))
            self.tgt_embed, self.decoder, self.out = self.dec.embed, self.dec.rnn, self.dec.out
            dec_blocks = self.dec.blocks
        else:
            # Drawn in the plain decoder's order (embedding, stack, output), then attention.
            H = c.hidden_size
            Hs = self.encoder.num_directions * H
            self.dec = None
            self.tgt_embed = Embedding(c.tgt_vocab_size, c.embed_dim, dtype=dt, seed=rng)
            self.decoder = make_rnn(c, c.embed_dim + H, rng)  # input feeding: [y, h~]
            self.out = Linear(H, c.tgt_vocab_size, dtype=dt, seed=rng)
            self.drop = Dropout(c.dropout)
            self.attention = Attention(c.attention, H, Hs, H, dtype=dt, seed=rng)
            self.attn_combine = Linear(Hs + H, H, dtype=dt, seed=rng)
            self.attn_dec = AttentionDecoder(self.decoder, self.attention, self.attn_combine)
            dec_blocks = {"tgt_embed": self.tgt_embed, "decoder": self.decoder, "out": self.out,
                          "attention": self.attention, "attn_combine": self.attn_combine}
        self.blocks = {"src_embed": self.src_embed, "encoder": self.encoder}
        self.bridge = None
        if c.bidirectional:
            K = self.encoder.num_directions
            self.bridge = StateBridge(K * c.hidden_size, c.hidden_size, lstm=self.is_lstm,
                                      rng=rng, dtype=dt, names=("bridge_h", "bridge_c"))
            self.blocks.update(self.bridge.blocks)
        self.blocks.update(dec_blocks)

    @property
    def uses_bridge(self) -> bool:
        return self.bridge is not None

    @property
    def has_attention(self) -> bool:
        return self.attention is not None

    @staticmethod
    def param_shapes(c: Seq2SeqConfig) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        E, H, L = c.embed_dim, c.hidden_size, c.num_layers
        shapes = {"src_embed.weight": (c.src_vocab_size, E),
                  **recurrent_shapes("encoder", E, H, L, c.cell, c.bidirectional)}
        if c.bidirectional:
            for b in ("bridge_h", "bridge_c") if c.cell == "lstm" else ("bridge_h",):
                shapes.update({f"{b}.weight": (H, 2 * H), f"{b}.bias": (H,)})
        att = c.attention != "none"
        shapes.update({"tgt_embed.weight": (c.tgt_vocab_size, E),
                       **recurrent_shapes("decoder", E + (H if att else 0), H, L, c.cell, False),
                       "out.weight": (c.tgt_vocab_size, H), "out.bias": (c.tgt_vocab_size,)})
        if att:
            Hs = (2 if c.bidirectional else 1) * H
            shapes.update({f"attention.{k}": v
                           for k, v in attention_shapes(c.attention, H, Hs, H).items()})
            shapes.update({"attn_combine.weight": (H, Hs + H), "attn_combine.bias": (H,)})
        return shapes

    # ---- encoder and bridge ----------------------------------------------------------
    def encode(self, src, src_lengths=None, *, training=False, rng=None):
        """src (N, S) -> ``(decoder initial state, cache)``; state (L, N, H) or (h, c).

        Without a bridge the encoder's final state is handed over as it is; with one (a
        bidirectional encoder) each layer's directions go side by side, (L*K, N, H) ->
        (L, N, K*H), into the bridge."""
        state, _, cache = self._encode(src, src_lengths, training=training, rng=rng)
        return state, cache

    def _encode(self, src, src_lengths=None, *, training=False, rng=None):
        """``(decoder initial state, memory (N, S, K*H) or None, cache)``: the memory, the
        encoder's outputs, only for an attention model."""
        src = check_ids(src, "src")
        src_lengths = full_lengths(src, src_lengths)
        x, ecache = self.src_embed.forward(src)
        memory, enc_state, rcache = self.encoder.forward(x, src_lengths, training=training,
                                                         rng=rng)
        if not self.has_attention:
            memory = None
        if self.bridge is None:
            return enc_state, memory, (ecache, rcache, None)
        L, K = self.config.num_layers, self.encoder.num_directions
        hs = enc_state if self.is_lstm else (enc_state,)
        cats = [s.reshape(L, K, *s.shape[1:]).transpose(0, 2, 1, 3).reshape(L, s.shape[1], -1)
                for s in hs]
        dec, bcache = self.bridge.forward(cats)
        return (dec if self.is_lstm else dec[0]), memory, (ecache, rcache, bcache)

    def _encode_backward(self, dstate, cache, dmemory=None) -> dict:
        ecache, rcache, bcache = cache
        grads = {}
        if bcache is None:
            denc = dstate
        else:
            L, K, H = self.config.num_layers, self.encoder.num_directions, self.config.hidden_size
            dcats, grads = self.bridge.backward(dstate if self.is_lstm else (dstate,), bcache)
            dencs = [np.ascontiguousarray(d.reshape(L, d.shape[1], K, H).transpose(0, 2, 1, 3)
                                          .reshape(L * K, d.shape[1], H)) for d in dcats]
            denc = tuple(dencs) if self.is_lstm else dencs[0]
        dx, _, genc = self.encoder.backward(dmemory, rcache, denc)
        _, gemb = self.src_embed.backward(dx, ecache)
        grads.update(self.prefixed("encoder", genc))
        grads.update(self.prefixed("src_embed", gemb))
        return grads

    # ---- teacher forcing -------------------------------------------------------------
    def forward(self, src, src_lengths, tgt_in, tgt_lengths=None, *, training=False, rng=None):
        """Teacher-forced logits (N, M, V) for decoder inputs tgt_in (N, M)."""
        state, memory, ecache = self._encode(src, src_lengths, training=training, rng=rng)
        if self.has_attention:
            logits, dcache, _ = self._attend(src, src_lengths, memory, state, tgt_in,
                                             training, rng)
        else:
            logits, dcache = self._teacher_forced(state, tgt_in, tgt_lengths, training, rng)
        return logits, (ecache, dcache)

    def _attend(self, src, src_lengths, memory, state, tgt_in, training, rng):
        """The attention decoder under teacher forcing -> ``(logits, cache, alpha (N, M, S))``."""
        tgt_in = check_ids(tgt_in, "tgt_in")
        if training and self.drop.p > 0 and rng is None:
            raise ValueError("training with dropout needs an explicit numpy Generator (rng=...)")
        prep = self.attention.prepare(memory, full_lengths(src, src_lengths))
        y, tcache = self.tgt_embed.forward(tgt_in)
        (ht, alpha), acache = self.attn_dec.forward(y, prep, state, training=training, rng=rng)
        hd, dcache = self.drop.forward(ht, training=training and self.drop.p > 0, rng=rng)
        logits, ocache = self.out.forward(hd)
        return logits, (prep, tcache, acache, dcache, ocache), alpha

    def backward(self, dlogits, cache) -> dict:
        ecache, dcache = cache
        if not self.has_attention:
            grads, dstate = self.dec.backward(dlogits, list(dcache))
            grads.update(self._encode_backward(dstate, ecache))
            return {k: grads[k] for k in self.params}
        prep, tcache, acache, drop_cache, ocache = dcache
        dhd, gout = self.out.backward(dlogits, ocache)
        dht, _ = self.drop.backward(dhd, drop_cache)
        dy, acc, dstate, gdec, gcomb = self.attn_dec.backward(dht, acache)
        dmemory, gatt = self.attention.prepare_backward(acc, prep)
        _, gemb = self.tgt_embed.backward(dy, tcache)
        grads = self._encode_backward(dstate, ecache, dmemory)
        for name, g in (("out", gout), ("decoder", gdec), ("attn_combine", gcomb),
                        ("attention", gatt), ("tgt_embed", gemb)):
            grads.update(self.prefixed(name, g))
        return {k: grads[k] for k in self.params}

    def loss(self, src, src_lengths, targets, *, training=False, rng=None):
        """Mean token cross-entropy (incl. the final ``<eos>``) -> ``(loss, grads)``.

        ``targets``: a list of N target id sequences, without ``<eos>`` (may be empty).
        """
        return self._loss(lambda tin, tlen: self.forward(src, src_lengths, tin, tlen,
                                                         training=training, rng=rng),
                          targets)

    def batch_loss(self, batch, *, training=False, rng=None):
        return self.loss(batch["src"], batch["src_lengths"], batch["targets"],
                         training=training, rng=rng)

    # ---- decoding --------------------------------------------------------------------
    def _begin(self, src, src_lengths, max_len):
        """Encode, feed ``<eos>``: ``(first log-probabilities (N, V), state, max_len)``."""
        src = check_ids(src, "src")
        src_lengths = full_lengths(src, src_lengths)
        state, memory, _ = self._encode(src, src_lengths)
        if self.has_attention:
            state = self._attn_state(state, memory, src_lengths)
            logp, state = self._attn_step(np.full(src.shape[0], EOS, dtype=np.int64), state)
        else:
            logp, state = self._start(state, src.shape[0])
        return logp, state, int(self.config.max_target_len if max_len is None else max_len)

    @property
    def _step(self):
        """The decoding step ``(ids (M,), state) -> (log-probabilities (M, V), state)``."""
        return self._attn_step if self.has_attention else self.dec.step

    # ---- decoding with attention -------------------------------------------------------
    # The decoding state is a tuple of arrays with the rows on axis 1, the layout
    # rnnkit.decode reorders for beam search, so every part follows its hypothesis:
    # h (L, M, H), [c (L, M, H),] h~ (1, M, H), memory (S, M, Hs), keys (S, M, A),
    # score mask (S, M).
    def _attn_state(self, state, memory, src_lengths):
        prep = self.attention.prepare(memory, src_lengths)
        hs = state if self.is_lstm else (state,)
        ht = np.zeros((1, memory.shape[0], self.config.hidden_size), dtype=self.dtype)
        return (*hs, ht, prep.memory.transpose(1, 0, 2), prep.keys.transpose(1, 0, 2),
                prep.neg.T)

    def _attn_step(self, ids, state, alphas=None):
        """One decoding step; ``alphas``, a list, also receives the attention weights (M, S)."""
        n = 2 if self.is_lstm else 1
        h, c = state[0], (state[1] if self.is_lstm else None)
        ht, mem, keys, neg = state[n:]
        prep = Prepared(mem.transpose(1, 0, 2), keys.transpose(1, 0, 2), neg.T, None)
        y, _ = self.tgt_embed.forward(np.asarray(ids))
        out, alpha, (hs, cs, ht) = self.attn_dec.step(y, (list(h), None if c is None else list(c),
                                                          ht[0]), prep)
        if alphas is not None:
            alphas.append(alpha)
        logits, _ = self.out.forward(out)
        new = (np.stack(hs),) + ((np.stack(cs),) if self.is_lstm else ()) + (ht[None],)
        return log_softmax(logits.astype(np.float64)), new + (mem, keys, neg)

    def alignments(self, src, src_lengths, outputs) -> list:
        """The attention weights behind ``outputs`` (N target id lists without ``<eos>``, e.g.
        what :meth:`greedy` or :meth:`beam_search` returned for ``src``): a list of N arrays
        (len(output) + 1, source length), row t the weights the decoder read when it emitted
        output t (the last row: the closing ``<eos>``).  ValueError without attention."""
        if not self.has_attention:
            raise ValueError("this model has no attention (config attention 'none'): it has "
                             "no alignments")
        src = check_ids(src, "src")
        src_lengths = full_lengths(src, src_lengths)
        tin, _, tlen = self.decoder_io(outputs)
        state, memory, _ = self._encode(src, src_lengths)
        _, _, alpha = self._attend(src, src_lengths, memory, state, tin, False, None)
        return [alpha[i, : tlen[i], : src_lengths[i]].copy() for i in range(len(tlen))]

    def greedy(self, src, src_lengths=None, max_len=None) -> list:
        """Greedy decoding: a list of N target id lists (without ``<eos>``)."""
        logp, state, max_len = self._begin(src, src_lengths, max_len)
        return [h.tokens for h in decode.greedy(self._step, logp, state, EOS, max_len)]

    def beam_search(self, src, src_lengths=None, beam_size=4, max_len=None,
                    length_penalty=0.0, return_scores=False):
        """Beam search (:func:`rnnkit.decode.beam_search`): a list of N best target id lists
        (without ``<eos>``); with ``return_scores`` also their total log-probabilities."""
        return run_beam_search(self._begin, self._step, src, src_lengths, beam_size, max_len,
                               length_penalty, return_scores)


def run_beam_search(begin, step, src, src_lengths, beam_size, max_len, length_penalty,
                    return_scores):
    """:meth:`Seq2Seq.beam_search` on a ``begin``/``step`` pair (a model's or an ensemble's)."""
    K = int(beam_size)
    if K < 1:
        raise ValueError(f"beam size must be >= 1, got {beam_size}")
    if isinstance(length_penalty, bool) \
            or not isinstance(length_penalty, (int, float, np.integer, np.floating)) \
            or not np.isfinite(length_penalty):
        # NaN would make every ranking comparison False: the "best" beam would be arbitrary.
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")
    logp, state, max_len = begin(src, src_lengths, max_len)
    hyps = decode.beam_search(step, logp, state, EOS, max_len, K, float(length_penalty))
    best = [h.tokens for h in hyps]
    return (best, [h.logprob for h in hyps]) if return_scores else best
