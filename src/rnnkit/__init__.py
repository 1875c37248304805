"""rnnkit: recurrent neural networks with exact, hand-written backpropagation through time.

Shapes everywhere: N batch, T time, D input, H hidden, V vocabulary, L layers.
"""

__version__ = "0.1.0"

from .layers import (  # noqa: E402
    GRU, LSTM, RNN, Dropout, Embedding, Linear, RecurrentLayer, from_torch, log_softmax,
    softmax, softmax_cross_entropy,
)

__all__ = ["__version__", "GRU", "LSTM", "RNN", "RecurrentLayer", "from_torch", "Embedding",
           "Linear", "Dropout", "softmax_cross_entropy", "log_softmax", "softmax"]
