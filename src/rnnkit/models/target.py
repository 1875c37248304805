"""What seq2seq and the conditional generator share: a decoder block started from a state
the model computes, trained by teacher forcing on targets closed by ``<eos>``.

``<eos>`` doubles as the start symbol (as in fairseq): the decoder never has to emit a
"start", so one special token serves both ends.  Shapes: N batch, M target time,
V vocabulary.
"""

from __future__ import annotations

import numpy as np

from ..layers.basic import softmax_cross_entropy
from ..layers.decoder import Decoder
from ._blocks import check_ids, full_lengths, length_mask
from .base import EOS, PAD, Model


def decoder_io(targets):
    """Target id sequences (without ``<eos>``) -> ``(inputs (N, M+1), outputs (N, M+1),
    lengths (N,))``: inputs start with ``<eos>`` (the start symbol), outputs end with it."""
    seqs_in = [np.concatenate([[EOS], np.asarray(t, dtype=np.int64)]) for t in targets]
    seqs_out = [np.concatenate([np.asarray(t, dtype=np.int64), [EOS]]) for t in targets]
    lengths = np.array([len(s) for s in seqs_in], dtype=np.int64)
    M = int(lengths.max())
    tin = np.full((len(seqs_in), M), PAD, dtype=np.int64)
    tout = np.full((len(seqs_in), M), PAD, dtype=np.int64)
    for i, (a, b) in enumerate(zip(seqs_in, seqs_out)):
        tin[i, : len(a)] = a
        tout[i, : len(b)] = b
    return tin, tout, lengths


class TargetDecoderModel(Model):
    """What seq2seq and the conditional generator share: a :class:`Decoder` started from a
    state the model computes (``initial_state``), trained with teacher forcing on targets
    that end with ``<eos>``, and decoded through :mod:`rnnkit.decode`."""

    def _decoder(self, c, rng, vocab_size, names):
        return Decoder(vocab_size, c.embed_dim, c.hidden_size, c.num_layers, cell=c.cell,
                       rng=rng, dropout=c.dropout, dtype=c.dtype, names=names,
                       forget_bias=1.0 if c.cell == "lstm" else 0.0)

    @property
    def is_lstm(self) -> bool:
        return self.config.cell == "lstm"

    def _teacher_forced(self, state, tgt_in, lengths, training, rng):
        tgt_in = check_ids(tgt_in, "tgt_in")
        lengths = full_lengths(tgt_in, lengths)
        logits, _, dcache = self.dec.forward(tgt_in, lengths, state, training=training, rng=rng)
        return logits, dcache

    def _loss(self, forward, targets):
        tin, tout, tlen = decoder_io(targets)
        logits, cache = forward(tin, tlen)
        mask = length_mask(tlen, tin.shape[1], self.dtype)
        loss, dlogits = softmax_cross_entropy(logits, tout, mask)
        return loss, self.backward(dlogits, cache)

    def _start(self, state, N):
        """The decoder's first log-probabilities (N, V) (fed ``<eos>``, the start symbol)."""
        return self.dec.step(np.full(N, EOS, dtype=np.int64), state)
