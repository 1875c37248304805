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

Decoding feeds each chosen token back.  Beam search keeps at most K hypotheses per sentence;
a hypothesis that emits ``<eos>`` leaves the beam (which shrinks by one), so with K = 1 it
is greedy decoding step for step.  The finished hypotheses are ranked by
``log p / len ** length_penalty`` (len counts the ``<eos>``; 0 = raw log-probability).

Shapes: N batch, S source time, M target time, E embedding, H hidden, L layers,
K directions, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers.basic import Dropout, Embedding, Linear, log_softmax, softmax_cross_entropy
from ._blocks import (TaskModel, check_common, check_ids, full_lengths, length_mask, make_rnn,
                      recurrent_shapes)

# The ids rnnkit.data.Vocab gives its specials: <pad> = 0, <unk> = 1, <eos> = 2.
EOS = 2
PAD = 0


@dataclass
class Seq2SeqConfig:
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

    def validate(self):
        check_common(self)
        for name in ("src_vocab_size", "tgt_vocab_size", "max_target_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.tgt_vocab_size <= EOS:
            raise ValueError(f"tgt_vocab_size must include the specials (> {EOS})")
        return self


class Seq2Seq(TaskModel):
    """Encoder-decoder.  params: ``src_embed.*``, ``encoder.*``, ``bridge_h.*``
    (``bridge_c.*``), ``tgt_embed.*``, ``decoder.*``, ``out.*``."""

    config_class = Seq2SeqConfig
    kind = "seq2seq"

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config.validate()
        c = config
        rng = np.random.default_rng(c.seed)
        dt = np.dtype(c.dtype)
        self.src_embed = Embedding(c.src_vocab_size, c.embed_dim, dtype=dt, seed=rng)
        self.encoder = make_rnn(c, c.embed_dim, rng, bidirectional=c.bidirectional)
        self.tgt_embed = Embedding(c.tgt_vocab_size, c.embed_dim, dtype=dt, seed=rng)
        self.decoder = make_rnn(c, c.embed_dim, rng)
        self.drop = Dropout(c.dropout)
        self.out = Linear(c.hidden_size, c.tgt_vocab_size, dtype=dt, seed=rng)
        self.blocks = {"src_embed": self.src_embed, "encoder": self.encoder}
        self.uses_bridge = c.bidirectional
        if self.uses_bridge:
            K = self.encoder.num_directions
            self.bridge_h = Linear(K * c.hidden_size, c.hidden_size, dtype=dt, seed=rng)
            self.blocks["bridge_h"] = self.bridge_h
            if c.cell == "lstm":
                self.bridge_c = Linear(K * c.hidden_size, c.hidden_size, dtype=dt, seed=rng)
                self.blocks["bridge_c"] = self.bridge_c
        self.blocks.update({"tgt_embed": self.tgt_embed, "decoder": self.decoder, "out": self.out})

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

    @property
    def is_lstm(self) -> bool:
        return self.config.cell == "lstm"

    # ---- encoder and bridge ----------------------------------------------------------
    def encode(self, src, src_lengths=None, *, training=False, rng=None):
        """src (N, S) -> ``(decoder initial state, cache)``; state (L, N, H) or (h, c)."""
        src = check_ids(src, "src")
        src_lengths = full_lengths(src, src_lengths)
        x, ecache = self.src_embed.forward(src)
        _, enc_state, rcache = self.encoder.forward(x, src_lengths, training=training, rng=rng)
        if not self.uses_bridge:
            return enc_state, (ecache, rcache, None)
        hs = enc_state if self.is_lstm else (enc_state,)
        dec, bcaches = [], []
        for i, s in enumerate(hs):
            # (L*K, N, H) -> (L, N, K*H): layer l's directions side by side.
            L, K = self.config.num_layers, self.encoder.num_directions
            N, H = s.shape[1], s.shape[2]
            cat = s.reshape(L, K, N, H).transpose(0, 2, 1, 3).reshape(L, N, K * H)
            lin = self.bridge_h if i == 0 else self.bridge_c
            z, lcache = lin.forward(cat)
            if i == 0:
                z = np.tanh(z)
            dec.append(z)
            bcaches.append((lcache, z))
        state = tuple(dec) if self.is_lstm else dec[0]
        return state, (ecache, rcache, bcaches)

    def _encode_backward(self, dstate, cache) -> dict:
        ecache, rcache, bcaches = cache
        grads = {}
        if bcaches is None:
            denc = dstate
        else:
            ds = dstate if self.is_lstm else (dstate,)
            L, K = self.config.num_layers, self.encoder.num_directions
            dencs = []
            for i, (d, (lcache, z)) in enumerate(zip(ds, bcaches)):
                lin = self.bridge_h if i == 0 else self.bridge_c
                if i == 0:
                    d = d * (1.0 - z * z)
                dcat, g = lin.backward(d, lcache)
                grads.update(self.prefixed("bridge_h" if i == 0 else "bridge_c", g))
                N, H = dcat.shape[1], self.config.hidden_size
                dencs.append(np.ascontiguousarray(
                    dcat.reshape(L, N, K, H).transpose(0, 2, 1, 3).reshape(L * K, N, H)))
            denc = tuple(dencs) if self.is_lstm else dencs[0]
        dx, _, genc = self.encoder.backward(None, rcache, denc)
        _, gemb = self.src_embed.backward(dx, ecache)
        grads.update(self.prefixed("encoder", genc))
        grads.update(self.prefixed("src_embed", gemb))
        return grads

    # ---- teacher forcing -------------------------------------------------------------
    @staticmethod
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

    def forward(self, src, src_lengths, tgt_in, tgt_lengths=None, *, training=False, rng=None):
        """Teacher-forced logits (N, M, V) for decoder inputs tgt_in (N, M)."""
        state, ecache = self.encode(src, src_lengths, training=training, rng=rng)
        tgt_in = check_ids(tgt_in, "tgt_in")
        tgt_lengths = full_lengths(tgt_in, tgt_lengths)
        y, tcache = self.tgt_embed.forward(tgt_in)
        h, _, dcache = self.decoder.forward(y, tgt_lengths, state, training=training, rng=rng)
        hd, drop_cache = self.drop.forward(h, training=training, rng=rng)
        logits, ocache = self.out.forward(hd)
        return logits, (ecache, tcache, dcache, drop_cache, ocache)

    def backward(self, dlogits, cache) -> dict:
        ecache, tcache, dcache, drop_cache, ocache = cache
        dhd, gout = self.out.backward(dlogits, ocache)
        dh, _ = self.drop.backward(dhd, drop_cache)
        dy, dstate, gdec = self.decoder.backward(dh, dcache)
        _, gtemb = self.tgt_embed.backward(dy, tcache)
        grads = self._encode_backward(dstate, ecache)
        grads.update(self.prefixed("tgt_embed", gtemb))
        grads.update(self.prefixed("decoder", gdec))
        grads.update(self.prefixed("out", gout))
        return {k: grads[k] for k in self.params}

    def loss(self, src, src_lengths, targets, *, training=False, rng=None):
        """Mean token cross-entropy (incl. the final ``<eos>``) -> ``(loss, grads)``.

        ``targets``: a list of N target id sequences, without ``<eos>`` (may be empty).
        """
        tin, tout, tlen = self.decoder_io(targets)
        logits, cache = self.forward(src, src_lengths, tin, tlen, training=training, rng=rng)
        mask = length_mask(tlen, tin.shape[1], self.dtype)
        loss, dlogits = softmax_cross_entropy(logits, tout, mask)
        return loss, self.backward(dlogits, cache)

    def batch_loss(self, batch, *, training=False, rng=None):
        return self.loss(batch["src"], batch["src_lengths"], batch["targets"],
                         training=training, rng=rng)

    # ---- decoding --------------------------------------------------------------------
    def _step(self, prev, state):
        """One decoder step for M rows: prev ids (M,) -> ``(log-probs (M, V) float64, state)``."""
        y, _ = self.tgt_embed.forward(prev[:, None])
        h, state, _ = self.decoder.forward(y, None, state)
        logits, _ = self.out.forward(h[:, 0])
        return log_softmax(logits.astype(np.float64)), state

    def _max_len(self, src_lengths, max_len):
        if max_len is not None:
            return int(max_len)
        return int(self.config.max_target_len)

    def greedy(self, src, src_lengths=None, max_len=None) -> list:
        """Greedy decoding: a list of N target id lists (without ``<eos>``)."""
        src = check_ids(src, "src")
        src_lengths = full_lengths(src, src_lengths)
        state, _ = self.encode(src, src_lengths)
        N = src.shape[0]
        prev = np.full(N, EOS, dtype=np.int64)
        out = [[] for _ in range(N)]
        done = np.zeros(N, dtype=bool)
        for _ in range(self._max_len(src_lengths, max_len)):
            logp, state = self._step(prev, state)
            prev = logp.argmax(axis=-1)
            for i in np.flatnonzero(~done):
                if prev[i] == EOS:
                    done[i] = True
                else:
                    out[i].append(int(prev[i]))
            if done.all():
                break
        return out

    def beam_search(self, src, src_lengths=None, beam_size=4, max_len=None,
                    length_penalty=0.0, return_scores=False):
        """Beam search: a list of N best target id lists (without ``<eos>``).

        With ``return_scores`` also the list of their total log-probabilities.
        """
        K = int(beam_size)
        if K < 1:
            raise ValueError(f"beam size must be >= 1, got {beam_size}")
        if isinstance(length_penalty, bool) \
                or not isinstance(length_penalty, (int, float, np.integer, np.floating)) \
                or not np.isfinite(length_penalty):
            # NaN would make every ranking comparison False: the "best" beam would be arbitrary.
            raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")
        src = check_ids(src, "src")
        src_lengths = full_lengths(src, src_lengths)
        state, _ = self.encode(src, src_lengths)
        N = src.shape[0]
        owner = np.arange(N)  # sentence of each active row
        hyps = [[] for _ in range(N)]
        scores = np.zeros(N, dtype=np.float64)
        finished = [[] for _ in range(N)]  # (tokens, logp)
        for _ in range(self._max_len(src_lengths, max_len)):
            if len(owner) == 0:
                break
            prev = np.array([h[-1] if h else EOS for h in hyps], dtype=np.int64)
            logp, state = self._step(prev, state)
            cand = scores[:, None] + logp  # (M, V)
            V = cand.shape[1]
            parents, new_hyps, new_scores, new_owner = [], [], [], []
            for s in np.unique(owner):
                rows = np.flatnonzero(owner == s)
                k = K - len(finished[s])
                flat = cand[rows].reshape(-1)
                # Stable order: among ties the lower (row, token) wins, like argmax.
                top = np.argsort(-flat, kind="stable")[:k]
                for j in top:
                    r, v = rows[j // V], int(j % V)
                    if v == EOS:
                        finished[s].append((hyps[r], float(flat[j])))
                    else:
                        parents.append(r)
                        new_hyps.append(hyps[r] + [v])
                        new_scores.append(float(flat[j]))
                        new_owner.append(s)
            parents = np.array(parents, dtype=np.int64)
            state = tuple(x[:, parents] for x in state) if self.is_lstm else state[:, parents]
            hyps, scores = new_hyps, np.array(new_scores, dtype=np.float64)
            owner = np.array(new_owner, dtype=np.int64)
        for r, s in enumerate(owner):  # out of steps: unfinished hypotheses compete as they are
            finished[s].append((hyps[r], float(scores[r])))
        best, best_scores = [], []
        for s in range(N):
            def key(item):
                toks, lp = item
                return lp / (len(toks) + 1) ** length_penalty if length_penalty else lp
            toks, lp = max(finished[s], key=key)  # first of equals wins (max is stable)
            best.append(list(toks))
            best_scores.append(lp)
        return (best, best_scores) if return_scores else best
