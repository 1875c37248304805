"""rnnkit: recurrent neural networks with exact, hand-written backpropagation through time.

Shapes everywhere: N batch, T time, D input, H hidden, V vocabulary, L layers.

The names below load on first use (PEP 562 ``__getattr__``), so ``import rnnkit`` and
``rnnkit --version`` cost no NumPy, Numba or plotting import.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# OpenBLAS's idle worker threads spin for 2**28 cycles (~0.1 s) after each multi-threaded
# call before they sleep, taking a core from the fused time loop's own row workers, which run
# right after the large products (kernels.blas: a row split on 2 cores went from 14 to 22 ms
# per LSTM layer pass with the spinning thread beside it).  The timeout is read once, when
# NumPy loads its BLAS: rnnkit imported first sets a short one unless the user set it;
# kernels.blas.spin_is_short() tells the thread plan whether it is in effect.
BLAS_SPIN_ENV = "OPENBLAS_THREAD_TIMEOUT"
_BLAS_SPIN_SET_BEFORE_NUMPY = BLAS_SPIN_ENV in _os.environ or "numpy" not in _sys.modules
if "numpy" not in _sys.modules:
    _os.environ.setdefault(BLAS_SPIN_ENV, "10")

# name -> submodule that defines it
_LAZY = {name: ".layers" for name in (
    "GRU", "LSTM", "RNN", "Dropout", "Embedding", "Linear", "RecurrentLayer", "from_torch",
    "log_softmax", "softmax", "softmax_cross_entropy")}

__all__ = ["__version__", "GRU", "LSTM", "RNN", "RecurrentLayer", "from_torch", "Embedding",
           "Linear", "Dropout", "softmax_cross_entropy", "log_softmax", "softmax"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
