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
from ..layers.basic import Embedding
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

    positive = ("embed_dim", "hidden_size", "num_layers", "src_vocab_size", "tgt_vocab_size",
                "max_target_len")

    def check(self):
        if self.tgt_vocab_size <= EOS:
            raise ValueError(f"tgt_vocab_size must include the specials (> {EOS})")


class Seq2Seq(TargetDecoderModel):
    """Encoder-decoder.  params: ``src_embed.*``, ``encoder.*``, ``bridge_h.*``
    (``bridge_c.*``), ``tgt_embed.*``, ``decoder.*``, ``out.*``."""

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
        self.dec = self._decoder(c, rng, c.tgt_vocab_size, ("tgt_embed", "decoder", "out"))
        self.tgt_embed, self.decoder, self.out = self.dec.embed, self.dec.rnn, self.dec.out
        self.blocks = {"src_embed": self.src_embed, "encoder": self.encoder}
        self.bridge = None
        if c.bidirectional:
            K = self.encoder.num_directions
            self.bridge = StateBridge(K * c.hidden_size, c.hidden_size, lstm=self.is_lstm,
                                      rng=rng, dtype=dt, names=("bridge_h", "bridge_c"))
            self.blocks.update(self.bridge.blocks)
        self.blocks.update(self.dec.blocks)

    @property
    def uses_bridge(self) -> bool:
        return self.bridge is not None

    @staticmethod
    def param_shapes(c: Seq2SeqConfig) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        E, H, L = c.embed_dim, c.hidden_size, c.num_layers
        shapes = {"src_embed.weight": (c.src_vocab_size, E),
                  **recurrent_shapes("encoder", E, H, L, c.cell, c.bidirectional)}
        if c.bidirectional:
            for b in ("bridge_h", "bridge_c") if c.cell == "lstm" else ("bridge_h",):
                shapes.update({f"{b}.weight": (H, 2 * H), f"{b}.bias": (H,)})
        shapes.update({"tgt_embed.weight": (c.tgt_vocab_size, E),
                       **recurrent_shapes("decoder", E, H, L, c.cell, False),
                       "out.weight": (c.tgt_vocab_size, H), "out.bias": (c.tgt_vocab_size,)})
        return shapes

    # ---- encoder and bridge ----------------------------------------------------------
    def encode(self, src, src_lengths=None, *, training=False, rng=None):
        """src (N, S) -> ``(decoder initial state, cache)``; state (L, N, H) or (h, c).

        Without a bridge the encoder's final state is handed over as it is; with one (a
        bidirectional encoder) each layer's directions go side by side, (L*K, N, H) ->
        (L, N, K*H), into the bridge."""
        src = check_ids(src, "src")
        src_lengths = full_lengths(src, src_lengths)
        x, ecache = self.src_embed.forward(src)
        _, enc_state, rcache = self.encoder.forward(x, src_lengths, training=training, rng=rng)
        if self.bridge is None:
            return enc_state, (ecache, rcache, None)
        L, K = self.config.num_layers, self.encoder.num_directions
        hs = enc_state if self.is_lstm else (enc_state,)
        cats = [s.reshape(L, K, *s.shape[1:]).transpose(0, 2, 1, 3).reshape(L, s.shape[1], -1)
                for s in hs]
        dec, bcache = self.bridge.forward(cats)
        return (dec if self.is_lstm else dec[0]), (ecache, rcache, bcache)

    def _encode_backward(self, dstate, cache) -> dict:
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
        dx, _, genc = self.encoder.backward(None, rcache, denc)
        _, gemb = self.src_embed.backward(dx, ecache)
        grads.update(self.prefixed("encoder", genc))
        grads.update(self.prefixed("src_embed", gemb))
        return grads

    # ---- teacher forcing -------------------------------------------------------------
    def forward(self, src, src_lengths, tgt_in, tgt_lengths=None, *, training=False, rng=None):
        """Teacher-forced logits (N, M, V) for decoder inputs tgt_in (N, M)."""
        state, ecache = self.encode(src, src_lengths, training=training, rng=rng)
        logits, dcache = self._teacher_forced(state, tgt_in, tgt_lengths, training, rng)
        return logits, (ecache, dcache)

    def backward(self, dlogits, cache) -> dict:
        ecache, dcache = cache
        grads, dstate = self.dec.backward(dlogits, list(dcache))
        grads.update(self._encode_backward(dstate, ecache))
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
        state, _ = self.encode(src, full_lengths(src, src_lengths))
        logp, state = self._start(state, src.shape[0])
        return logp, state, int(self.config.max_target_len if max_len is None else max_len)

    def greedy(self, src, src_lengths=None, max_len=None) -> list:
        """Greedy decoding: a list of N target id lists (without ``<eos>``)."""
        logp, state, max_len = self._begin(src, src_lengths, max_len)
        return [h.tokens for h in decode.greedy(self.dec.step, logp, state, EOS, max_len)]

    def beam_search(self, src, src_lengths=None, beam_size=4, max_len=None,
                    length_penalty=0.0, return_scores=False):
        """Beam search (:func:`rnnkit.decode.beam_search`): a list of N best target id lists
        (without ``<eos>``); with ``return_scores`` also their total log-probabilities."""
        K = int(beam_size)
        if K < 1:
            raise ValueError(f"beam size must be >= 1, got {beam_size}")
        if isinstance(length_penalty, bool) \
                or not isinstance(length_penalty, (int, float, np.integer, np.floating)) \
                or not np.isfinite(length_penalty):
            # NaN would make every ranking comparison False: the "best" beam would be arbitrary.
            raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")
        logp, state, max_len = self._begin(src, src_lengths, max_len)
        hyps = decode.beam_search(self.dec.step, logp, state, EOS, max_len, K,
                                  float(length_penalty))
        best = [h.tokens for h in hyps]
        return (best, [h.logprob for h in hyps]) if return_scores else best
