"""The thread plan of the fused time loop, and BLAS thread limits through ``threadpoolctl``.

The per-step products of a recurrent layer are small (e.g. (32, 256) @ (256, 1024), 17
MFLOP).  Split across cores by the BLAS they gain little: its threads meet at a barrier after
every call while the gate kernel runs on one core, and a thread that the OS has descheduled
stalls every step (measured: 20x slower on a loaded 2-core machine).  So the fused driver
splits the *batch* instead: ``workers`` threads each run the whole sequence over their own
rows — recurrent product (in the compiled loop on the weight packed once, :mod:`.packed`;
else on one BLAS thread), then the gate kernel, both releasing the GIL — with no
synchronisation per time step (rows of a batch never interact in the recurrence).
The large hoisted products (input projection, weight gradients) keep all BLAS threads.

The plan depends on the machine's load (one worker, and every product of the layer on one
BLAS thread, when the 1-minute load average says every core is taken — our own threads
included), so it is visible — :func:`plan_line` is one line for ``rnnkit train`` to print
once — and ``RNNKIT_STEP_THREADS=n`` overrides it (n workers, 1 BLAS thread each in the loop).
Rows split this way give bitwise the same results as one thread (the packed product, and
NumPy's OpenBLAS, sum each element in the same order however the rows are cut), so a plan
that changes with the load does not change a run's numbers.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace

ENV = "RNNKIT_STEP_THREADS"
# Per-step multiply-adds from which the step product may use every BLAS thread (batch-1
# generation at H 1024 is 4M MACs; the char-LM LSTM step at N=32 is 8M).
SPLIT_MACS = 1 << 22
# Fewest batch rows worth a worker of their own in the compiled loops.
MIN_ROWS = 8
# Weight bytes a generation step reads per token for each thread it is split over: below
# ~1 MB a thread's share is read faster than the threads meet (2 x 256: LSTM 3.2 MB, GRU
# 2.4 MB, Elman 0.8 MB).
GEN_BYTES_PER_THREAD = 1 << 20
# At most this many threads for one generation step (its layers meet after each layer).
GEN_MAX_THREADS = 4
# The longest OpenBLAS idle spin (log2 cycles) under which the row split pays.
SHORT_SPIN = 16


def _env_threads() -> int:
    """RNNKIT_STEP_THREADS as an int >= 0 (0 or unset: by the plan); ValueError naming it."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 0
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{ENV} must be a whole number of threads >= 0, got {raw!r}") from None
    if n < 0:
        raise ValueError(f"{ENV} must be a whole number of threads >= 0, got {raw!r}")
    return n


def check_env() -> None:
    """ValueError naming RNNKIT_STEP_THREADS if it is set to anything but a count: layers call
    this when they are built, so a typo fails before a run creates any file."""
    _env_threads()


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - no load average here
        return None


@dataclass(frozen=True)
class ThreadPlan:
    """How a time loop over N rows runs: ``workers`` threads, each over a contiguous share
    of the rows, each step product on ``blas`` BLAS threads (0: the BLAS's own setting)."""

    workers: int
    blas: int
    reason: str
    hoisted: int = 0  # BLAS threads for the large products around the loop (0: all)
    compiled: bool = False  # the loop runs as the compiled whole-sequence kernels

    def shares(self, N: int) -> list[tuple[int, int]]:
        """Row ranges [n0, n1) of the workers, as equal as can be."""
        k = max(1, min(self.workers, N))
        edges = [N * i // k for i in range(k + 1)]
        return list(zip(edges[:-1], edges[1:]))

    def describe(self) -> str:
        blas = "all BLAS threads" if self.blas == 0 else f"{self.blas} BLAS thread" + \
            ("s" if self.blas > 1 else "")
        loop = "time loop on 1 thread" if self.workers == 1 else \
            f"time loop on {self.workers} threads, each over its share of the batch rows"
        big = "all BLAS threads" if self.hoisted == 0 else f"{self.hoisted} BLAS thread" + \
            ("s" if self.hoisted > 1 else "")
        step = "compiled step products on the packed weight" if self.compiled else \
            f"{blas} per step product"
        return f"{loop}, {step}, {big} for the large ones ({self.reason})"


def spin_is_short() -> bool:
    """Whether NumPy's OpenBLAS was loaded with a short idle-spin timeout (set by ``import
    rnnkit`` before NumPy, or by the user): only then can row workers have the cores to
    themselves right after a multi-threaded product (see rnnkit/__init__.py)."""
    import rnnkit

    if not rnnkit._BLAS_SPIN_SET_BEFORE_NUMPY:
        return False
    try:
        return int(os.environ.get(rnnkit.BLAS_SPIN_ENV, "")) <= SHORT_SPIN
    except ValueError:
        return False


def plan(N: int, macs: int = 0, *, load: float | None = ..., compiled: bool = False,
         short_spin: bool | None = None, blas_threads: int | None = ...) -> ThreadPlan:
    """The plan for a time loop over N rows whose step products do ``macs`` multiply-adds.

    ``compiled``: the loop runs as the compiled whole-sequence kernels (kernels.sequence),
    which release the GIL for the whole sequence.  ``load``, ``short_spin`` and
    ``blas_threads`` (tests) replace the measured 1-minute load average,
    :func:`spin_is_short` and :func:`get_threads`."""
    chosen = _choose(N, macs, load, compiled, short_spin, blas_threads)
    return replace(chosen, compiled=bool(compiled))


def _no_free_core(c: int, load: float | None) -> str | None:
    """Why a second thread would find no core of its own (one core, no load average to go
    by, a load that leaves none free), or None when one is free: the first question of both
    the training plan and :func:`generation_threads`."""
    if c < 2:
        return "one core"
    if load is None:
        return "no load average"
    if load >= c + 0.5:
        return f"load {load:.1f} on {c} cores"
    return None


def _choose(N, macs, load, compiled, short_spin, blas_threads) -> ThreadPlan:
    forced = _env_threads()
    if forced:
        return ThreadPlan(max(1, min(forced, N)), 1, f"{ENV}={forced}")
    c = cores()
    load = load_average() if load is ... else load
    busy = _no_free_core(c, load)
    if busy:
        # Every BLAS call on one thread, the large ones too: a descheduled BLAS thread stalls
        # the others at each call's end (char-LM LSTM step at load 12: 1.03-1.1 s with the
        # hoisted products on two threads, 0.59-0.64 s on one).
        return ThreadPlan(1, 1, busy + ": one thread", hoisted=1)
    short_spin = spin_is_short() if short_spin is None else short_spin
    if compiled and short_spin and N >= 2 * MIN_ROWS:
        if blas_threads is ...:
            blas_threads = get_threads()
        if blas_threads == 1:
            # OPENBLAS_NUM_THREADS=1 / OMP_NUM_THREADS=1 (one rank per core under mpiexec, as
            # the README advises): the user gave this process one core.
            return ThreadPlan(1, 1, f"load {load:.1f} on {c} cores, N={N}: BLAS set to 1 "
                                    "thread")
        # Compiled loops, no spinning BLAS threads: each core runs its share of the rows for
        # the whole sequence (LSTM 2x256 N=32, one layer pass on the idle 2-core machine:
        # 21.6 ms on one worker, 14.2 ms on two).
        k = min(c, N // MIN_ROWS)
        return ThreadPlan(k, 1, f"load {load:.1f} on {c} cores, N={N}: compiled loops")
    # Otherwise no row split unless asked for with RNNKIT_STEP_THREADS: Python-level steps,
    # or OpenBLAS threads left spinning, made it lose to one worker at every size measured
    # (rnnkit train, step time: LSTM 2x256 N=32 202 vs 154 ms, GRU 149 vs 126 ms).
    if macs >= SPLIT_MACS:
        return ThreadPlan(1, 0, f"load {load:.1f} on {c} cores, N={N}: large step product")
    return ThreadPlan(1, 1, f"load {load:.1f} on {c} cores, N={N}")


def generation_threads(weight_bytes: int, requested="auto", *,
                       load: float | None = ...) -> int:
    """Threads for one generation step that reads ``weight_bytes`` of weights per token
    (:func:`rnnkit.kernels.lmstep.lm_token_split`).  ``RNNKIT_STEP_THREADS`` wins, then a
    ``requested`` number; "auto": one per ~1 MB of weights, at most the cores (and 4), one
    when the load average leaves no core free or OpenBLAS's idle threads spin for long
    (they would hold the second core after the stepper's own table product, as they would
    the row workers')."""
    forced = _env_threads()
    if forced:
        return forced
    if requested != "auto":
        return requested
    c = cores()
    load = load_average() if load is ... else load
    if _no_free_core(c, load) or get_threads() == 1 or not spin_is_short():
        return 1  # no free core, or the user gave this process one (OMP_NUM_THREADS=1)
    return max(1, min(c, GEN_MAX_THREADS, weight_bytes // GEN_BYTES_PER_THREAD))


def _compiled() -> bool:
    from .. import recurrent

    return recurrent.sequence_loop(2)


def describe(N: int, hidden: int, gates: int) -> str:
    """One line: the plan a training or scoring loop with batch N and hidden size H gets now."""
    return plan(N, N * gates * hidden * hidden, compiled=_compiled()).describe()


def plan_for(cell: str, N: int, hidden: int) -> ThreadPlan:
    """The plan of a ``cell`` ('lstm', 'gru', 'rnn') layer at batch N and hidden size H.

    A training loop can run each whole step under ``threads(plan_for(...).hoisted)`` so the
    products outside the recurrent layers (output layer, ...) follow the same load rule."""
    from ..cells import gate_count

    return plan(N, N * gate_count(cell) * hidden * hidden, compiled=_compiled())


def plan_line(cell: str, N: int, hidden: int) -> str:
    """``thread plan: ...`` for a ``cell`` layer at batch N — the line ``rnnkit train`` prints
    once at its start."""
    return f"thread plan: {plan_for(cell, N, hidden).describe()}; override with {ENV}=n"


_controller = None


def _blas_controller():
    """threadpoolctl's handle on the BLAS libraries loaded now (made once, after NumPy)."""
    global _controller
    if _controller is None:
        import numpy  # noqa: F401  (loads the BLAS)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def get_threads() -> int | None:
    """BLAS threads now (the largest over the loaded BLAS libraries), or None if none found."""
    libs = _blas_controller().lib_controllers
    return max((lib.num_threads for lib in libs), default=None)


@contextmanager
def threads(n: int):
    """Run the block with ``n`` BLAS threads, then restore; n = 0 leaves the BLAS as it is."""
    if n <= 0:
        yield
        return
    ctl = _blas_controller()
    if not ctl.lib_controllers or all(lib.num_threads == n for lib in ctl.lib_controllers):
        yield
        return
    with ctl.limit(limits=n):
        yield
