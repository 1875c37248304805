"""Sequence tasks on users' TSV data, like :mod:`rnnkit.lm` for language models.

- :mod:`.spec`: one :class:`Task` spec per kind (classify, tag, seq2seq) in :data:`TASKS`;
- :mod:`.data`: reading TSV files and ``predict``'s inputs;
- :mod:`.bundle`: a model directory (``save_bundle`` / ``load_bundle``);
- :mod:`.predict`: predictions in input order and held-out metrics.
"""

from .bundle import MODEL_FILE, load_bundle, save_bundle
from .data import LEVELS, join_tokens, read_inputs, read_tsv, split_tokens
from .predict import evaluate, predict_ids, predict_lines
from .spec import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task", "LEVELS", "MODEL_FILE", "read_tsv", "read_inputs",
           "split_tokens", "join_tokens", "save_bundle", "load_bundle", "predict_ids",
           "predict_lines", "evaluate"]
