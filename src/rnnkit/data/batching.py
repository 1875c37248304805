"""Batches: parallel token streams for language models, padded minibatches for sequence tasks.

Language models (char-rnn, Zaremba et al. 2014) read the corpus as N parallel contiguous
streams: row n of every chunk continues row n of the chunk before, so the hidden state
carried from one chunk to the next is the state of the same text.  Sequence tasks pad their
sequences to the longest in the minibatch (:func:`pad_sequences`, which every task batch goes
through) and pass the true ``lengths`` on; the order of the minibatches is the training
loop's (:mod:`rnnkit.training.sources`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .._checks import check_positive_int


class StreamBatcher:
    """The chunks of a token stream (M,) laid out as N parallel streams, T steps per chunk.

    The first ``N * S`` tokens (``S = M // N``) are cut into N consecutive streams of S tokens:
    stream n is ``ids[n*S:(n+1)*S]``.  Chunk k holds inputs ``x = streams[:, k*T:(k+1)*T]``
    and targets ``y = streams[:, k*T+1:(k+1)*T+1]``, both (N, T) int64, for
    ``k < n_chunks = (S - 1) // T``.  Leftover tokens past the last full chunk are not used.
    Chunks are fresh arrays, so a caller may modify them.  Resetting the hidden state is the
    caller's choice; it is natural at chunk 0 of each epoch.
    """

    def __init__(self, ids, batch_size: int, seq_len: int):
        N = check_positive_int(batch_size, "batch_size")
        T = check_positive_int(seq_len, "seq_len")
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be a 1-D integer array (M,), got {ids.dtype.name} "
                             f"of shape {ids.shape}")
        needed = N * (T + 1)
        if ids.size < needed:
            raise ValueError(f"the corpus is too short for one batch: batch_size {N} x "
                             f"(seq_len {T} + 1) needs {needed} tokens, it has {ids.size}")
        if ids.min() < 0:
            raise ValueError(f"ids must be >= 0, got {int(ids.min())}")
        S = ids.size // N
        self.batch_size = N
        self.seq_len = T
        # In the ids' own (smallest) dtype, a view when it can be: a corpus is not copied as
        # int64 (8 bytes a token); each chunk is converted as it is taken.
        self._streams = np.ascontiguousarray(ids[: N * S]).reshape(N, S)
        self.n_chunks = (S - 1) // T

    def __len__(self) -> int:
        return self.n_chunks

    @property
    def tokens_per_chunk(self) -> int:
        """N * T: the target tokens in one chunk."""
        return self.batch_size * self.seq_len

    def chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``, each (N, T) int64: chunk ``k`` of an epoch, 0 <= k < n_chunks."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < self.n_chunks:
            raise ValueError(f"chunk index must be an integer in [0, {self.n_chunks}), got {k!r}")
        t0 = int(k) * self.seq_len
        x = self._streams[:, t0: t0 + self.seq_len].astype(np.int64)
        y = self._streams[:, t0 + 1: t0 + self.seq_len + 1].astype(np.int64)
        return x, y

    def epoch(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks ``start, start+1, ..., n_chunks-1`` in order (``start`` resumes an epoch)."""
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) \
                or not 0 <= start <= self.n_chunks:
            raise ValueError(f"start must be an integer in [0, {self.n_chunks}], got {start!r}")
        return (self.chunk(k) for k in range(int(start), self.n_chunks))

    def position(self, step: int) -> tuple[int, int]:
        """``(epoch, chunk)`` of global step ``step`` (steps count chunks from 0 across epochs)."""
        step = check_positive_int(step, "step", minimum=0)
        return divmod(step, self.n_chunks)

    def steps(self, start_step: int = 0) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray]]:
        """Endless ``(step, epoch, chunk, x, y)`` from global step ``start_step`` on.

        Every epoch visits the chunks in the same order, so resuming at a saved step yields
        exactly the batches the interrupted run would have seen.
        """
        start_step = check_positive_int(start_step, "start_step", minimum=0)

        def gen():
            step = start_step
            while True:
                epoch, k = divmod(step, self.n_chunks)
                yield (step, epoch, k, *self.chunk(k))
                step += 1
        return gen()


def stream_batches(ids, batch_size: int, seq_len: int, start: int = 0
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of ``(x, y)`` chunks, each (N, T) int64, from chunk ``start`` on.

    See :class:`StreamBatcher` for the layout; ValueError if ``ids`` (M,) holds fewer than
    ``N * (T + 1)`` tokens.
    """
    return StreamBatcher(ids, batch_size, seq_len).epoch(start)


def pad_sequences(seqs: Sequence, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (N, Tmax) int64, lengths (N,) int64)``: N id sequences right-padded with ``pad_id``.

    Every sequence must be a non-empty 1-D integer array-like; ``Tmax`` is the longest length.
    """
    pad_id = check_positive_int(pad_id, "pad_id", minimum=0)
    if len(seqs) == 0:
        raise ValueError("pad_sequences needs at least one sequence")
    arrays = []
    for i, s in enumerate(seqs):
        a = np.asarray(s)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"sequence {i} must be a 1-D integer array, got {a.dtype.name} "
                             f"of shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"sequence {i} is empty; every sequence needs at least one token")
        arrays.append(a)
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    ids = np.full((len(arrays), int(lengths.max())), pad_id, dtype=np.int64)
    for i, a in enumerate(arrays):
        ids[i, : a.size] = a
    return ids, lengths


def minibatch_indices(n: int, batch_size: int, rng: np.random.Generator | None = None,
                      drop_last: bool = False) -> Iterator[np.ndarray]:
    """Index arrays (<= N,) int64 covering ``range(n)`` once, shuffled by ``rng``.

    ``rng=None`` keeps the natural order (for evaluation).  With ``drop_last`` a final short
    minibatch is left out.  The same seed gives the same minibatches.
    """
    n = check_positive_int(n, "n", minimum=0)
    N = check_positive_int(batch_size, "batch_size")
    if rng is None:
        order = np.arange(n, dtype=np.int64)
    elif isinstance(rng, np.random.Generator):
        order = rng.permutation(n).astype(np.int64)
    else:
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    stop = n - n % N if drop_last else n
    return (order[i: i + N] for i in range(0, stop, N))


def padded_batches(seqs: Sequence, batch_size: int, rng: np.random.Generator | None = None,
                   pad_id: int = 0, drop_last: bool = False
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(idx (N,), ids (N, Tmax), lengths (N,))`` minibatches of ``seqs``, shuffled by ``rng``.

    ``idx`` says which sequences a minibatch holds, so labels or targets can be gathered
    with the same indices.
    """
    batches = minibatch_indices(len(seqs), batch_size, rng, drop_last)
    return ((idx, *pad_sequences([seqs[i] for i in idx], pad_id)) for idx in batches)
