"""Recurrent cells: the step equations forward and their exact backward.

``CELLS`` is the one registry of cell names (``"rnn"``, ``"gru"``, ``"lstm"``) -> cell class;
layers, models, kernels, the CLI and the model-file checks all look names up here, and a
cell's gate count G (rows of its weights are G*H) comes from its class.
"""

from .base import Cell, sigmoid
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell

CELLS = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}

__all__ = ["CELLS", "Cell", "GRUCell", "LSTMCell", "RNNCell", "sigmoid", "check_cell",
           "gate_count", "make_cell"]


def check_cell(name) -> str:
    """``name`` if it names a cell of :data:`CELLS`, else a one-line ValueError."""
    if not isinstance(name, str) or name not in CELLS:
        names = list(CELLS)
        raise ValueError(f"unknown cell {name!r}: expected {', '.join(names[:-1])} or {names[-1]}")
    return name


def gate_count(name: str) -> int:
    """G, the number of gate blocks in a cell's weights (rnn 1, gru 3, lstm 4)."""
    return CELLS[check_cell(name)].gates


def make_cell(mode: str, *, nonlinearity: str = "tanh", reset_after: bool = True) -> Cell:
    """Build the reference cell for ``mode``, a name of :data:`CELLS`."""
    cls = CELLS[check_cell(mode)]
    if cls is RNNCell:
        return RNNCell(nonlinearity)
    if cls is GRUCell:
        return GRUCell(reset_after)
    return cls()
