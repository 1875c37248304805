"""Sizes a user asks for, checked against the machine before anything is allocated.

``rnnkit train --hidden 1000000`` would ask NumPy for terabytes: the failure would come as a
MemoryError deep in model construction (a failure while running, exit 1), although it is the
user's choice of size (exit 2).  :func:`check_memory_need` estimates, from the options alone,
the memory a command needs at the least and refuses in one line naming the options when that
is more than the machine has (physical memory; ``RNNKIT_MEMORY_BYTES`` overrides it).  The
estimate is a lower bound (the vocabulary is not known yet), so it never refuses a run that
would fit; a run that passes may still run out of memory, which is then exit 1.
"""

from __future__ import annotations

import os

MEMORY_ENV = "RNNKIT_MEMORY_BYTES"
_FLOAT = 4  # float32


def machine_memory() -> int | None:
    """Bytes of memory this process may use at most: ``RNNKIT_MEMORY_BYTES``, else physical."""
    raw = os.environ.get(MEMORY_ENV)
    if raw:
        try:
            v = int(raw)
            if v > 0:
                return v
        except ValueError:
            pass
        raise ValueError(f"{MEMORY_ENV} must be a positive number of bytes, got {raw[:40]!r}")
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _int(args, name) -> int | None:
    v = getattr(args, name, None)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def training_need(args) -> tuple[int, list[str]]:
    """(bytes at least, the options that set them) of a ``train`` command's model and step.

    Weights, gradients and Adam's two moments (4 copies of the recurrent stack) plus the gate
    activations one step keeps for backpropagation (N x T x L x directions x gates x H).
    Non-positive or missing sizes count as absent (their own checks report them).
    """
    H, E, L = _int(args, "hidden"), _int(args, "embed") or 1, _int(args, "layers") or 1
    if H is None:
        return 0, []
    from .cells import CELLS

    G = getattr(CELLS.get(getattr(args, "cell", "lstm")), "gates", 4)
    dirs = 2 if getattr(args, "bidirectional", False) else 1
    first_in = max(E, 1)
    deeper_in = dirs * H
    weights = dirs * G * H * (first_in + H + 2) + (L - 1) * dirs * G * H * (deeper_in + H + 2)
    need = 4 * weights * _FLOAT
    N, T = _int(args, "batch") or 1, _int(args, "seq_len") or 1
    activations = N * T * L * dirs * (G + 2) * H * _FLOAT
    need += activations
    opts = [f"--hidden {H}"]
    if L > 1:
        opts.append(f"--layers {L}")
    if E > H:
        opts.append(f"--embed {E}")
    if activations > need // 2:
        opts += [f"--batch {N}"] + ([f"--seq-len {T}"] if getattr(args, "seq_len", None) else [])
    return need, opts


# Options that make one array per unit at least: ``sample --num N`` keeps N token streams
# (an int64 id and a float state, 16 bytes each at the very least).
_PER_UNIT = {"num": 16}


def check_memory_need(args) -> None:
    """ValueError (the user's mistake, exit 2) if the sizes asked for cannot fit in memory."""
    from ._io import describe_bytes

    checks = []
    if getattr(args, "hidden", None) is not None:
        need, opts = training_need(args)
        checks.append((need, " ".join(opts), "a model of this size"))
    for name, unit in _PER_UNIT.items():
        n = _int(args, name)
        if n is not None:
            checks.append((n * unit, f"--{name} {n}", "this many at once"))
    have = machine_memory()
    for need, opts, what in checks:
        if have is not None and need > have:
            raise ValueError(f"{opts}: {what} needs at least {describe_bytes(need)} of memory, "
                             f"this machine has {describe_bytes(have)} ({MEMORY_ENV} overrides "
                             "that figure); choose smaller sizes")
