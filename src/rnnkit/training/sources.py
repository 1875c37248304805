"""Batch sources: where the training loop's minibatches come from, one kind per data layout.

A source gives the loop this rank's share of step ``s``'s global batch (:meth:`next`),
computes its loss and gradients (:meth:`loss_and_grads`, returning the loss weight — the
tokens or examples the mean is over — so ranks combine into the exact global mean), takes
back what the step produced (:meth:`accept`: the language model's carried hidden state) and
saves/restores its position (:meth:`state_dict`, :meth:`load_state_dict`).  The loop knows
nothing else about the data: no language-model special case.

- :class:`StreamSource`: a token array read as N parallel streams, T tokens a chunk, the hidden
  state carried from chunk to chunk (stateful truncated BPTT) and reset each epoch.
- :class:`ExampleSource`: padded minibatches of examples drawn epoch by epoch
  (:class:`BatchOrder`), bucketed by length when a length function is given.

Dropout masks do not depend on how the batch is split: :class:`ExampleRNG` draws each
example's (stream's) rows of a mask from a generator seeded by the run's seed, the step, the
example's *global* index and the call's number, so K ranks draw exactly the masks one
process draws, and padding to another length changes no mask of a real position.
"""

from __future__ import annotations

import numpy as np

from .. import _checks
from .dist import Solo, share

_DROPOUT_SALT = 0x64726F70  # "drop": keeps these streams apart from other uses of the seed


class ExampleRNG:
    """A stand-in for ``numpy.random.Generator`` in dropout: ``random(shape)`` with one
    generator per example, seeded by ``(seed, step, global index, call number)``.

    The batch axis: :meth:`random_batch` is told it (the time-major recurrent layers call it
    with axis 1); :meth:`random` (numpy's name, used by the Dropout layer) takes axis 0, or
    axis 1 when only that one has the batch's size, and reads a 2-D (T*N, D) shape as a
    flattened time-major batch.  Each example's slice is drawn in
    row-major order, so a longer padding changes none of the real positions.
    """

    def __init__(self, seed: int, step: int, indices):
        self.key = (_DROPOUT_SALT, int(seed), int(step))
        self.indices = [int(i) for i in indices]
        self.calls = 0

    def random(self, size=None):
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        n = len(self.indices)
        if len(shape) == 2 and n and shape[0] != n and shape[0] % n == 0:
            # A time-major batch flattened to (T*N, D), as the language model's output layer
            # takes it: example j owns rows j, N + j, 2N + j, ...
            return self.random_batch((shape[0] // n, n, shape[1]), 1).reshape(shape)
        axis = 1 if len(shape) >= 3 and shape[0] != n and shape[1] == n else 0
        return self.random_batch(shape, axis)

    def random_batch(self, shape, axis: int):
        """Uniform [0, 1) of ``shape`` whose axis ``axis`` holds the examples (time-major
        callers say 1: the shape alone is ambiguous when T equals the batch)."""
        shape, n = tuple(shape), len(self.indices)
        if len(shape) <= axis or shape[axis] != n:
            raise ValueError(f"dropout shape {shape} has no axis of the batch's {n} examples")
        out = np.empty(shape)
        rows = np.moveaxis(out, axis, 0)
        for j, i in enumerate(self.indices):
            rows[j] = np.random.default_rng([*self.key, i, self.calls]).random(rows.shape[1:])
        self.calls += 1
        return out


class StreamSource:
    """The language model's batches: chunk ``step % n_chunks`` of N streams of ``ids``.

    Rank r of K takes streams ``share(N, K, r)``; the carried state holds only those rows.
    The checkpoint holds the state of all N streams (gathered to rank 0), so a resumed run
    continues from exactly where it stopped.
    """

    def __init__(self, ids, batch_size: int, seq_len: int, seed: int, world=None):
        from ..data.batching import StreamBatcher

        self.world = world or Solo()
        self.batcher = StreamBatcher(ids, batch_size, seq_len)
        if batch_size < self.world.size:
            raise ValueError(f"--batch {batch_size} is smaller than the {self.world.size} "
                             "processes: each needs at least one stream")
        self.rows = share(batch_size, self.world.size, self.world.rank)
        self.seed = seed
        self.state = None

    def next(self, step: int):
        k = step % self.batcher.n_chunks
        if k == 0:
            self.state = None  # a new epoch starts each stream afresh
        x, y = self.batcher.chunk(k)
        return x[self.rows], y[self.rows]

    def loss_and_grads(self, model, batch, step: int):
        x, y = batch
        rng = ExampleRNG(self.seed, step, range(self.rows.start, self.rows.stop))
        loss, grads, new_state = model.loss_and_grads(x, y, self.state, training=True, rng=rng)
        return loss, grads, x.size, new_state

    def accept(self, new_state) -> None:
        self.state = new_state

    def state_dict(self):
        """``(arrays, meta)``: the carried state of all N streams (on rank 0; None elsewhere)."""
        if self.state is None:
            parts = {}
        elif isinstance(self.state, tuple):
            parts = {"state/h": self.state[0], "state/c": self.state[1]}
        else:
            parts = {"state/h": self.state}
        names = self.world.bcast_json(sorted(parts)) if self.world.size > 1 else sorted(parts)
        arrays = {}
        for name in names:
            got = self.world.gather_arrays(np.ascontiguousarray(parts[name].transpose(1, 0, 2)))
            if got is not None:
                arrays[name] = np.ascontiguousarray(np.concatenate(got).transpose(1, 0, 2))
        return arrays, {}

    def load_state_dict(self, arrays, meta, model) -> None:
        """Restore the carried state; ValueError if it does not fit the model and the batch."""
        if "state/h" not in arrays:
            self.state = None
            return
        expected = model.zero_state(self.batcher.batch_size)
        want = expected if isinstance(expected, tuple) else (expected,)
        got = (arrays["state/h"], arrays["state/c"]) if isinstance(expected, tuple) \
            else (arrays["state/h"],)
        for g, w in zip(got, want):
            if g.shape != w.shape or g.dtype != w.dtype:
                raise ValueError(f"carried state is {g.dtype.name} {g.shape}, expected "
                                 f"{w.dtype.name} {w.shape}")
            if not np.isfinite(g).all():
                raise ValueError("carried state holds NaN or Inf")
        mine = tuple(np.ascontiguousarray(g[:, self.rows]) for g in got)
        self.state = mine if isinstance(expected, tuple) else mine[0]


class BatchOrder:
    """Endless minibatch index arrays over ``range(n)``, reshuffled every epoch.

    An iterator whose state (this epoch's batches and the position in them) goes into a
    checkpoint: :meth:`state` and :meth:`load_state`.  With ``length_fn`` batches are
    *bucketed*: each shuffled run of ``bucket`` batches is sorted by length before it is cut
    into batches (whose order is then shuffled), so a batch holds sequences of similar length.
    """

    def __init__(self, n, batch_size, rng, length_fn=None, bucket=50):
        if n < 1:
            raise ValueError("no training examples")
        self.n, self.batch_size, self.rng, self.bucket = int(n), int(batch_size), rng, bucket
        self.lengths = None if length_fn is None else np.array([length_fn(i) for i in range(n)])
        self._batches: list = []
        self._pos = 0

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        if self._pos == len(self._batches):
            self._batches, self._pos = self._new_epoch(), 0
        batch = self._batches[self._pos]
        self._pos += 1
        return batch

    def _new_epoch(self) -> list:
        n, bs = self.n, self.batch_size
        order = self.rng.permutation(n)
        if self.lengths is None:
            return [order[i: i + bs] for i in range(0, n, bs)]
        batches = []
        span = bs * self.bucket
        for i in range(0, n, span):
            chunk = order[i: i + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[j: j + bs] for j in range(0, len(chunk), bs))
        return [batches[k] for k in self.rng.permutation(len(batches))]

    def state(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(indices, bounds, position)``: this epoch's batches concatenated, where each one
        starts (and the last ends), and how many of them were handed out."""
        sizes = [len(b) for b in self._batches]
        bounds = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        flat = (np.concatenate(self._batches) if self._batches else np.zeros(0)).astype(np.int64)
        return flat, bounds, self._pos

    def load_state(self, indices, bounds, position) -> None:
        """Restore :meth:`state`'s output; ValueError if it cannot be this data's order."""
        indices, bounds = np.asarray(indices), np.asarray(bounds)
        if indices.ndim != 1 or bounds.ndim != 1 or indices.dtype.kind not in "iu" \
                or bounds.dtype.kind not in "iu" or bounds.size < 1:
            raise ValueError("batch order: malformed arrays")
        if bounds[0] != 0 or bounds[-1] != indices.size or (np.diff(bounds) < 1).any():
            raise ValueError("batch order: bad batch boundaries")
        if indices.size and (indices.min() < 0 or indices.max() >= self.n):
            raise ValueError(f"batch order: indices outside the {self.n} training examples")
        pos = _checks.check_positive_int(position, "batch order position", minimum=0)
        if pos > bounds.size - 1:
            raise ValueError("batch order: position past the epoch's end")
        self._batches = [indices[a:b].astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:])]
        self._pos = pos


class ExampleSource:
    """Padded-batch tasks: ``make_batch(indices)`` of this rank's share of each global batch.

    Every rank draws the same global order from the same seeded generator (the order depends
    only on the seed and the data), then takes ``share(len(batch), K, rank)`` of it: the
    global batch is split exactly, a rank may get one example more than another, and the
    loss weight ``count_fn(indices)`` (default: the number of examples; tokens for per-token
    losses) makes the combined loss and gradient the global batch's exact mean.
    """

    def __init__(self, make_batch, n, batch_size, seed, *, length_fn=None, count_fn=None,
                 world=None):
        self.world = world or Solo()
        self.make_batch = make_batch
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.order = BatchOrder(n, batch_size, self.rng, length_fn)
        self.count_fn = count_fn or len

    def next(self, step: int):
        idx = next(self.order)
        mine = idx[share(len(idx), self.world.size, self.world.rank)]
        return mine, (self.make_batch(mine) if len(mine) else None)

    def loss_and_grads(self, model, batch, step: int):
        idx, b = batch
        if b is None:  # more ranks than examples in this (last, short) batch
            return 0.0, {k: np.zeros_like(v) for k, v in model.params.items()}, 0, None
        loss, grads = model.batch_loss(b, training=True, rng=ExampleRNG(self.seed, step, idx))
        return loss, grads, int(self.count_fn(idx)), None

    def accept(self, new_state) -> None:
        pass

    def state_dict(self):
        from ..checkpoint import rng_to_json

        indices, bounds, pos = self.order.state()
        return ({"order/indices": indices, "order/bounds": bounds},
                {"order_pos": pos, "rng": rng_to_json(self.rng)})

    def load_state_dict(self, arrays, meta, model) -> None:
        from ..checkpoint import rng_from_json

        rng_from_json(meta["rng"], self.rng)  # in place: the batch order draws from it
        self.order.load_state(arrays["order/indices"], arrays["order/bounds"], meta["order_pos"])
