"""Recurrent cells: the step equations forward and their exact backward."""

from .base import Cell, sigmoid
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell

__all__ = ["Cell", "GRUCell", "LSTMCell", "RNNCell", "sigmoid", "make_cell"]


def make_cell(mode: str, *, nonlinearity: str = "tanh", reset_after: bool = True) -> Cell:
    """Build the reference cell for ``mode`` in {'rnn', 'gru', 'lstm'}."""
    if mode == "rnn":
        return RNNCell(nonlinearity)
    if mode == "gru":
        return GRUCell(reset_after)
    if mode == "lstm":
        return LSTMCell()
    raise ValueError(f"unknown cell {mode!r}: expected 'rnn', 'gru' or 'lstm'")
