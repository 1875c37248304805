"""Layers: recurrent (deep, bidirectional) and the non-recurrent blocks around them.

Names load on first use (PEP 562), so importing one submodule does not import the others.
"""

_LAZY = {
    **{n: ".basic" for n in ("Dropout", "Embedding", "Linear", "log_softmax", "softmax",
                             "softmax_cross_entropy")},
    **{n: ".recurrent" for n in ("GRU", "LSTM", "RNN", "RecurrentLayer", "from_torch")},
}

__all__ = ["Dropout", "Embedding", "Linear", "log_softmax", "softmax", "softmax_cross_entropy",
           "GRU", "LSTM", "RNN", "RecurrentLayer", "from_torch"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
