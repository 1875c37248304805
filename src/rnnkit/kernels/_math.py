"""Scalar activations for the fused kernels, one definition per dtype.

float32 uses a clamped rational minimax tanh (the Eigen/TensorFlow ``fast_tanh`` form: odd
degree-13 numerator over even degree-6 denominator).  It has no branches or library calls,
so LLVM turns the gate loops into 8-wide AVX2 code; its error is below 3e-7 absolute (about
4 ulp), the same order as float32 rounding of the products around it.  float64 — the dtype of
the gradient checks and the 1e-10 PyTorch parity tests — uses libm's correctly rounded-ish
``tanh`` so the fast path agrees with the NumPy reference to the last digits.

sigmoid(x) = (1 + tanh(x / 2)) / 2, the same overflow-free form as :func:`rnnkit.cells.sigmoid`.
``one(x)`` and ``half(x)`` give constants of x's type so float32 kernels never widen to
float64 (a float64 literal would halve the vector width).

None of these is inlined at the Numba IR level (``inline="always"``): LLVM inlines them
anyway — the kernels' machine code is the same, vectorised alike — while IR inlining of every
call site doubled the compile time of a cold start (lstm_fwd 2.6 -> 1.1 s of CPU).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload, register_jitable

from . import _cacheload

_cacheload.install()  # the kernel modules import this one (adam.py, which does not, too)

JIT = dict(cache=True, fastmath=True, error_model="numpy", nogil=True)
# The per-step gate kernels: inlined at the Numba IR level into their one caller each, the
# whole-sequence loops of .sequence, so a cold start compiles each kernel once (inside its
# loop) instead of once alone and once again inlined by LLVM.  Called from Python (the
# per-step path) they compile as usual.
STEP_JIT = dict(JIT, inline="always")

_CLAMP = np.float32(7.90531110763549805)
_A13 = np.float32(-2.76076847742355e-16)
_A11 = np.float32(2.00018790482477e-13)
_A9 = np.float32(-8.60467152213735e-11)
_A7 = np.float32(5.12229709037114e-08)
_A5 = np.float32(1.48572235717979e-05)
_A3 = np.float32(6.37261928875436e-04)
_A1 = np.float32(4.89352455891786e-03)
_B6 = np.float32(1.19825839466702e-06)
_B4 = np.float32(1.18534705686654e-04)
_B2 = np.float32(2.26843463243900e-03)
_B0 = np.float32(4.89352518554385e-03)


@register_jitable(fastmath=True, error_model="numpy")
def _tanh32(x):
    y = min(max(x, -_CLAMP), _CLAMP)
    y2 = y * y
    p = y2 * _A13 + _A11
    p = y2 * p + _A9
    p = y2 * p + _A7
    p = y2 * p + _A5
    p = y2 * p + _A3
    p = y2 * p + _A1
    q = y2 * _B6 + _B4
    q = y2 * q + _B2
    q = y2 * q + _B0
    return (y * p) / q


def tanh(x):  # pragma: no cover - replaced by the overload inside jitted code
    return np.tanh(x)


def sigmoid(x):  # pragma: no cover
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def one(x):  # pragma: no cover
    return 1.0


def half(x):  # pragma: no cover
    return 0.5


@overload(tanh, jit_options=JIT)
def _ov_tanh(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)
    return None


@overload(sigmoid, jit_options=JIT)
def _ov_sigmoid(x):
    if x == types.float32:
        h = np.float32(0.5)
        return lambda x: h + h * _tanh32(h * x)
    if isinstance(x, types.Float):
        return lambda x: 0.5 * (1.0 + math.tanh(0.5 * x))
    return None


@overload(one)
def _ov_one(x):
    if x == types.float32:
        c = np.float32(1.0)
        return lambda x: c
    return lambda x: 1.0


@overload(half)
def _ov_half(x):
    if x == types.float32:
        c = np.float32(0.5)
        return lambda x: c
    return lambda x: 0.5


@njit(**STEP_JIT)
def emit_row(o_, hn_, valid):
    """A step's output row: the new hidden row ``hn_`` where the step lies inside the
    sequence (nothing to copy when ``out`` is the history itself), zeros past its end."""
    if valid:
        if o_.ctypes.data != hn_.ctypes.data:
            for j in range(hn_.shape[0]):
                o_[j] = hn_[j]
    else:
        for j in range(o_.shape[0]):
            o_[j] = 0
