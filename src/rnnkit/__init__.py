"""rnnkit: recurrent neural networks with exact, hand-written backpropagation through time.

Shapes everywhere: N batch, T time, D input, H hidden, V vocabulary, L layers.

The names below load on first use (PEP 562 ``__getattr__``), so ``import rnnkit`` and
``rnnkit --version`` cost no NumPy, Numba or plotting import.
"""

__version__ = "0.1.0"

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
