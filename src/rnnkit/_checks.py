"""Input validation shared by the public API: one clear message naming expected vs received."""

from __future__ import annotations

import numpy as np


def as_float_array(x, name: str, ndim: int, dtype, letters: str) -> np.ndarray:
    """Check x is a floating array of rank ``ndim`` and dtype ``dtype``; return it as ndarray."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape ({letters}), got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions ({letters}), got shape {tuple(x.shape)}"
        )
    if x.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype.name}")
    return x


def check_shape(x, name: str, expected: tuple, letters: str, dtype=None) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape {expected}, got {type(x).__name__}")
    if tuple(x.shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {tuple(expected)} ({letters}), got {tuple(x.shape)}"
        )
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype.name}")
    return x


def check_lengths(lengths, N: int, T: int) -> np.ndarray | None:
    """Validate lengths (N,) of ints in [1, T]; None means every sequence has length T."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"lengths must be integers, got dtype {arr.dtype.name}")
    if arr.shape != (N,):
        raise ValueError(f"lengths must have shape ({N},) (N,), got {tuple(arr.shape)}")
    if N and (arr.min() < 1 or arr.max() > T):
        bad = arr[(arr < 1) | (arr > T)][0]
        raise ValueError(f"lengths must lie in [1, {T}] (T = {T}), got {int(bad)}")
    return arr.astype(np.int64)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_probability(value, name: str) -> float:
    """A dropout-like rate in [0, 1).

    Only numbers are taken: ``float("0.5")`` would quietly turn a string from a config file
    into a rate, so a string (or a bool) is a TypeError like any other non-number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [0, 1), got {value!r}")
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return v


DTYPES = ("float32", "float64")


def check_positive_fields(obj, names) -> None:
    """Each attribute of ``obj`` named in ``names`` a positive integer (a config's sizes).

    The test is :func:`check_positive_int`'s; the message is one ValueError naming the field,
    since a config read from a file is a value error whatever the wrong type is.
    """
    for name in names:
        v = getattr(obj, name)
        try:
            check_positive_int(v, name)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a positive integer, got {v!r}") from None


def check_choice(value, name: str, choices) -> None:
    """``value`` one of ``choices`` (a tuple of allowed values), else a one-line ValueError."""
    if isinstance(value, bool) or value not in tuple(choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
