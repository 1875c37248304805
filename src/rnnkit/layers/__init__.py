"""Layers: recurrent (deep, bidirectional) and the non-recurrent blocks around them."""

from .basic import Dropout, Embedding, Linear, log_softmax, softmax, softmax_cross_entropy
from .recurrent import GRU, LSTM, RNN, RecurrentLayer, from_torch

__all__ = ["Dropout", "Embedding", "Linear", "log_softmax", "softmax", "softmax_cross_entropy",
           "GRU", "LSTM", "RNN", "RecurrentLayer", "from_torch"]
