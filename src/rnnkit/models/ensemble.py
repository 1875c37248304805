"""An ensemble of encoder-decoders that decodes as one model.

Each member encodes the source itself and keeps its own decoding state; at every step the
ensemble's distribution over the next target symbol is the mean of the members'
probabilities::

    p(y_t | y_<t, x) = (1/K) sum_k p_k(y_t | y_<t, x)
    log p = logsumexp_k(log p_k) - log K

so greedy decoding and beam search (:mod:`rnnkit.decode`) run on it unchanged: the state is
every member's state side by side (a flat tuple of arrays, rows on axis 1), and reordering
the beam reorders all of them.  The members must share the target vocabulary (the same ids
for the same symbols; checked only as far as the sizes go, the caller knows the vocabularies)
and the same ``max_target_len``.
"""

from __future__ import annotations

import numpy as np

from .. import decode
from .base import EOS
from .seq2seq import Seq2Seq, run_beam_search


class Seq2SeqEnsemble:
    """Decode with several :class:`Seq2Seq` models at once (the mean of their probabilities)."""

    def __init__(self, models):
        models = list(models)
        if not models:
            raise ValueError("an ensemble needs at least one model")
        for m in models:
            if not isinstance(m, Seq2Seq):
                raise TypeError(f"ensemble members must be Seq2Seq models, got {type(m).__name__}")
        first = models[0].config
        for m in models[1:]:
            c = m.config
            if c.tgt_vocab_size != first.tgt_vocab_size:
                raise ValueError(f"ensemble members disagree on the target vocabulary: "
                                 f"{first.tgt_vocab_size} and {c.tgt_vocab_size} symbols")
            if c.src_vocab_size != first.src_vocab_size:
                raise ValueError(f"ensemble members disagree on the source vocabulary: "
                                 f"{first.src_vocab_size} and {c.src_vocab_size} symbols")
        self.models = models

    def _run(self):
        """A fresh decoding run: its own record of how the members' states sit in the tuple."""
        return _EnsembleRun(self.models)

    def greedy(self, src, src_lengths=None, max_len=None) -> list:
        """Greedy decoding on the mean distribution: N target id lists (without ``<eos>``)."""
        run = self._run()
        logp, state, max_len = run.begin(src, src_lengths, max_len)
        return [h.tokens for h in decode.greedy(run.step, logp, state, EOS, max_len)]

    def beam_search(self, src, src_lengths=None, beam_size=4, max_len=None,
                    length_penalty=0.0, return_scores=False):
        """Beam search on the mean distribution (as :meth:`Seq2Seq.beam_search`)."""
        run = self._run()
        return run_beam_search(run.begin, run.step, src, src_lengths, beam_size, max_len,
                               length_penalty, return_scores)


class _EnsembleRun:
    """One decoding run of an ensemble: the members' states side by side in a flat tuple.

    The layout (how many arrays each member's state holds, and whether it is a tuple) is
    fixed by :meth:`begin` and belongs to this run alone, so decodings never share it.
    """

    def __init__(self, models):
        self.models = models
        self.sizes, self.kinds = [], []

    @staticmethod
    def _flat(state):
        return state if isinstance(state, tuple) else (state,)

    @staticmethod
    def _combine(logps):
        if len(logps) == 1:
            return logps[0]
        stack = np.stack([np.asarray(lp, dtype=np.float64) for lp in logps])
        top = stack.max(axis=0)
        with np.errstate(invalid="ignore"):  # a symbol every member gives -inf stays -inf
            out = top + np.log(np.exp(stack - top).sum(axis=0)) - np.log(len(logps))
        return np.where(np.isneginf(top), -np.inf, out)

    def begin(self, src, src_lengths, max_len):
        logps, parts, lens = [], [], []
        for m in self.models:
            lp, st, ml = m._begin(src, src_lengths, max_len)
            logps.append(lp)
            parts.append(st)
            lens.append(ml)
        self.kinds = [isinstance(st, tuple) for st in parts]
        self.sizes = [len(self._flat(st)) for st in parts]
        state = tuple(a for st in parts for a in self._flat(st))
        return self._combine(logps), state, max(lens)

    def step(self, ids, state):
        logps, new, i = [], [], 0
        for m, n, is_tuple in zip(self.models, self.sizes, self.kinds):
            mine = state[i: i + n] if is_tuple else state[i]
            lp, st = m._step(ids, mine)
            logps.append(lp)
            new.extend(self._flat(st))
            i += n
        return self._combine(logps), tuple(new)
