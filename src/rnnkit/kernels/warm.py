"""A cold start on two cores: the kernels a training run will need later are compiled by a
second process while this one compiles the forward loop.

Numba compiles one function at a time per process (a global compiler lock), and a first
``rnnkit train`` on an empty cache spends 4-6 s compiling (none after the README's set-up,
which runs :mod:`rnnkit.precompile`): the whole-sequence forward loop,
the backward loop, Adam's update (and the gradient norm), the embedding scatter and the
validation's picked log-probabilities, in that order of first use.  When
the disk cache (``cache=True``) does not hold the backward loop yet, :func:`start` launches
``python -m rnnkit.kernels.warm CELL DTYPE``: it compiles the backward loop, then Adam, the
scatter and the validation's kernel, on tiny arrays of exactly the types the run passes, and prints each name as its
cache file is written.  The run compiles the forward loop meanwhile; before its first
backward pass (and its first Adam step, scatter) :func:`wait_for` waits for that line, and
the run's own call then loads the cached code instead of compiling it again.

Nothing depends on it: without Numba, with a warm cache, under MPI (ranks compile side by
side already), or if the helper fails, the run compiles what it needs itself, as before.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import numpy as np

KERNELS = ("bwd", "adam", "scatter", "pick")
_BWD = {"lstm": "lstm_bwd_seq", "gru": "gru_reset_after_bwd_seq", "rnn": "rnn_bwd_seq"}

_proc = None  # the helper process, while it has lines left to read
_done: set = set()
WAIT_S = 60.0  # longest wait for the helper; then it is stopped and the run compiles itself


def cached(func) -> bool:
    """Whether Numba's disk cache has an index for ``func`` (any signature)."""
    try:
        return os.path.exists(func._cache._cache_file._index_path)
    except Exception:  # an internal of Numba's that moved: behave as if cached
        return True


def start(cell: str, dtype, processes: int = 1) -> bool:
    """Launch the helper if the backward loop of ``cell`` (lstm, gru with reset after, rnn)
    is not in the disk cache yet and the run is one process (MPI ranks compile side by side
    already).  True when a helper runs."""
    global _proc
    if (_proc is not None or processes != 1 or cell not in _BWD
            or os.environ.get("RNNKIT_NO_WARM")):
        return False
    from . import available

    if not available():
        return False
    from . import sequence

    if cached(getattr(sequence, _BWD[cell])):
        return False
    try:
        _proc = subprocess.Popen([sys.executable, "-m", "rnnkit.kernels.warm", cell,
                                  np.dtype(dtype).name], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, bufsize=0)
    except OSError:
        _proc = None
        return False
    _done.clear()
    return True


def wait_for(name: str) -> None:
    """Before the first use of kernel ``name`` (one of :data:`KERNELS`): wait until the helper
    has cached it, or has ended.  Returns at once when no helper runs."""
    global _proc
    if _proc is None or name in _done:
        return
    fd = _proc.stdout.fileno()
    deadline = time.monotonic() + WAIT_S
    pending = b""
    while name not in _done:
        left = deadline - time.monotonic()
        chunk = os.read(fd, 4096) if left > 0 and select.select([fd], [], [], left)[0] else None
        if not chunk:  # ended (its output closed) or too slow: the run compiles the rest
            if chunk is None:
                _proc.kill()
            _proc.wait()
            _proc = None
            return
        *lines, pending = (pending + chunk).split(b"\n")
        _done.update(x.decode().strip() for x in lines)


def _compile(cell: str, dtype: str) -> None:
    """Compile, in this order, the backward loop, Adam and the scatter for (cell, dtype),
    printing each name once its code is in the cache."""
    from . import adam, loss, sequence, table
    from .packed import pack

    dt = np.dtype(dtype)
    T, N, H = 2, 1, 4
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * H
    pos = np.zeros((T, N), dtype=np.int64)
    pos[1] = 1
    lens = np.full(N, T, dtype=np.int64)

    def z(*shape):
        return np.zeros(shape, dtype=dt)

    if cell == "lstm":
        sequence.lstm_bwd_seq(0, N, pos, lens, z(N, H), z(N, H), z(T, N, H), True, z(N, H),
                              z(T, N, G), z(T + 1, N, H), z(T, N, G), z(N, G), pack(z(G, H)))
    elif cell == "gru":
        sequence.gru_reset_after_bwd_seq(0, N, pos, lens, z(N, H), z(N, H), z(T, N, H), True,
                                         z(T, N, G), z(T, N, H), z(T + 1, N, H), z(T, N, G),
                                         z(T, N, H), z(N, G), z(N, G), pack(z(G, H)))
    else:
        sequence.rnn_bwd_seq(0, N, pos, lens, z(N, H), z(N, H), z(T, N, H), True, False,
                             z(T + 1, N, H), z(T, N, G), pack(z(G, H)))
    print("bwd", flush=True)
    c = dt.type
    adam.adam_update(z(3), z(3), z(3), z(3), c(0.1), c(0.999), c(0.001), c(0.001), c(1.0),
                     c(1e-8), c(0.0))
    adam.sq_sum(z(3))
    print("adam", flush=True)
    table.scatter_rows(z(3, G), np.zeros((T, N), dtype=np.int64), z(T, N, G))
    print("scatter", flush=True)
    if dt == np.float32:  # the first validation's log-probabilities of the targets
        loss._pick32(z(3, 5), np.zeros(3, dtype=np.int64), np.zeros(3), True, z(1, 5)[0],
                     *loss._scratch(5))
        print("pick", flush=True)


if __name__ == "__main__":
    _compile(sys.argv[1], sys.argv[2])
