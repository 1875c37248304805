"""The processes a training run spans: one (:class:`Solo`) or K under ``mpiexec`` (:class:`MPIWorld`).

Data parallelism, the standard way (Horovod, PyTorch DDP): every rank holds the same weights,
computes the gradients of its share of the global batch, and one ``Allreduce`` per step sums
them, so every rank applies the same update.  mpi4py is imported only when the process was
started by an MPI launcher (``mpiexec`` sets ``PMI_RANK``/``PMI_SIZE``, Open MPI
``OMPI_COMM_WORLD_SIZE``, PMIx ``PMIX_RANK``): a plain install needs no MPI at all, and
``RNNKIT_MPI=0`` keeps a run in one process even under a launcher.
"""

from __future__ import annotations

import json
import os

import numpy as np

_LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
_world = None


class Solo:
    """One process: every collective is the identity."""

    rank, size = 0, 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray:
        return buf

    def bcast_array(self, a: np.ndarray) -> np.ndarray:
        return a

    def bcast_json(self, obj):
        return obj

    def gather_json(self, obj) -> list:
        return [obj]

    def gather_arrays(self, a: np.ndarray) -> list:
        return [a]

    def root_value(self, fn):
        """``fn()`` computed on rank 0, its value (JSON) known to every rank."""
        return fn()


class MPIWorld(Solo):
    """K processes of ``MPI.COMM_WORLD``."""

    def __init__(self, comm):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allreduce_sum(self, buf):
        """Sum ``buf`` (one contiguous array) over all ranks, in place: one collective call."""
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        return buf

    def bcast_array(self, a):
        """Rank 0's array on every rank (shape and dtype travel first, as JSON)."""
        head = self.bcast_json([a.dtype.str, list(a.shape)] if self.is_root else None)
        if not self.is_root:
            a = np.empty(head[1], dtype=np.dtype(head[0]))
        a = np.ascontiguousarray(a)
        self.comm.Bcast(a, root=0)
        return a

    def bcast_json(self, obj):
        # JSON bytes through a buffer call: nothing is unpickled, even between our own ranks.
        data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8) if self.is_root else None
        n = np.array([0 if data is None else data.size], dtype=np.int64)
        self.comm.Bcast(n, root=0)
        if data is None:
            data = np.empty(int(n[0]), dtype=np.uint8)
        data = np.ascontiguousarray(data)
        self.comm.Bcast(data, root=0)
        return json.loads(data.tobytes().decode())

    def gather_json(self, obj):
        text = json.dumps(obj).encode()
        parts = self.gather_arrays(np.frombuffer(text, dtype=np.uint8))
        return None if parts is None else [json.loads(p.tobytes().decode()) for p in parts]

    def gather_arrays(self, a):
        """Every rank's array (same dtype, any length along axis 0) at rank 0; None elsewhere."""
        a = np.ascontiguousarray(a)
        head = json.dumps([a.dtype.str, list(a.shape)]).encode()
        sizes = np.zeros(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([len(head)], dtype=np.int64), sizes)
        heads = np.zeros(int(sizes.sum()), dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.comm.Allgatherv(np.frombuffer(head, dtype=np.uint8),
                             [heads, sizes, offsets, self._MPI.BYTE])
        metas = [json.loads(heads[o:o + s].tobytes().decode()) for o, s in zip(offsets, sizes)]
        if self.is_root:
            out = [np.empty(m[1], dtype=np.dtype(m[0])) for m in metas]
            out[0][...] = a
            for r in range(1, self.size):
                self.comm.Recv(out[r].reshape(-1).view(np.uint8), source=r, tag=77)
            return out
        self.comm.Send(a.reshape(-1).view(np.uint8), dest=0, tag=77)
        return None

    def root_value(self, fn):
        value = fn() if self.is_root else None
        return self.bcast_json(value)


def world():
    """The processes of this run: :class:`Solo` unless started by an MPI launcher with K > 1.

    ValueError (one line naming the extra to install) when a launcher started the process
    but mpi4py is missing.
    """
    global _world
    if _world is not None:
        return _world
    launched = any(os.environ.get(v) for v in _LAUNCHER_VARS)
    if not launched or os.environ.get("RNNKIT_MPI", "1") == "0":
        _world = Solo()
        return _world
    try:
        from mpi4py import MPI
    except ImportError:
        raise ValueError("started by an MPI launcher, but mpi4py is not installed: "
                         "pip install 'rnnkit[mpi]'") from None
    comm = MPI.COMM_WORLD
    _world = Solo() if comm.Get_size() == 1 else MPIWorld(comm)
    return _world


def share(n: int, size: int, rank: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` items split over ``size`` ranks: the first
    ``n % size`` ranks take one more (``numpy.array_split``'s rule), so no item is dropped."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def on_root(world, fn):
    """``fn()`` on rank 0 only (reading files, checking options); None on the other ranks.

    When it fails, every rank stops: rank 0 raises the error (the one line the user sees)
    and the others leave quietly with the exit status it will have, so nobody waits forever
    for a broadcast that never comes.
    """
    if world.size == 1:
        return fn()
    if world.is_root:
        try:
            value = fn()
        except (ValueError, TypeError, OSError) as e:
            world.bcast_json({"failed": 2 if isinstance(e, (ValueError, TypeError)) else 1})
            raise
        world.bcast_json({"failed": 0})
        return value
    status = world.bcast_json(None)
    if status["failed"]:
        raise SystemExit(status["failed"])
    return None


def bcast_state(world, arrays, meta):
    """Rank 0's ``(arrays, meta)`` (a training state) on every rank."""
    if world.size == 1:
        return arrays, meta
    meta = world.bcast_json(meta)
    names = world.bcast_json(sorted(arrays) if world.is_root else None)
    return {k: world.bcast_array(arrays[k] if world.is_root else None) for k in names}, meta


def split_map(world, items: list, fn) -> list | None:
    """``fn(share)`` on each rank's contiguous share of ``items`` (known on rank 0); the
    results, in the order of ``items``, on rank 0 (None elsewhere).  ``fn`` returns a list of
    JSON values, one per item.  With one process: ``fn(items)``."""
    if world.size == 1:
        return fn(items)
    items = world.bcast_json(items if world.is_root else None)
    mine = fn(items[share(len(items), world.size, world.rank)])
    parts = world.gather_json(mine)
    return None if parts is None else [r for part in parts for r in part]
