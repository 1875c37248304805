"""A trained task model on disk: ``DIR/model.safetensors`` holds the weights, the model
config, the vocabularies, the labels and the levels (written atomically by
:mod:`rnnkit.checkpoint`), so the directory rebuilds the model by itself.

The checksum proves only that a file is as written, not that a hand-made one makes sense, so
:func:`load_bundle` checks the description piece by piece: the config, the vocabularies and
labels against it, the bounds on the work a loaded model may ask for, and the stored arrays'
shapes against the config *before* the model is built (a forged ``hidden_size`` cannot make
it allocate gigabytes), then NaN/Inf.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint
from ..models.base import config_from_json
from ..models.seq2seq import Seq2SeqConfig
from .spec import get_task

MODEL_FILE = "model.safetensors"
# The most target tokens a loaded seq2seq model may decode per input: a model file cannot
# make ``predict`` loop for ever (training writes 2 x the longest target + 10).
MAX_TARGET_LEN = Seq2SeqConfig.file_limits["max_target_len"]


def kind_of(task) -> str:
    return f"rnnkit.{get_task(task).name}"


def save_bundle(out_dir, task, model, meta: dict) -> Path:
    """Write ``model`` and its description ``meta`` to ``out_dir/model.safetensors``."""
    return model.save(Path(out_dir) / MODEL_FILE, kind_of(task), meta)


def load_bundle(path, task):
    """``(model, meta)`` from a model directory (or file) that ``TASK train`` wrote; the
    vocabularies in ``meta`` come back as :class:`~rnnkit.data.Vocab` objects.

    CheckpointError (a ValueError) with one line naming the file.
    """
    task = get_task(task)
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such model directory")
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.exists():
        raise ValueError(f"{path}: no {MODEL_FILE} in this directory (train a model into it first)")
    arrays, meta = load_checkpoint(file)
    kind = meta.get("kind")
    if kind != kind_of(task):
        shown = repr(kind) if len(repr(kind)) <= 40 else repr(kind)[:37] + "..."
        raise CheckpointError(f"{file}: holds a {shown} model, not a {task.name} model")
    cls = task.model_class_for(meta)
    try:
        config = config_from_json(cls.config_class, meta["config"])
        task.check_description(config, meta)
        config.check_file_limits()
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{file}: bad model description ({_one_line(e)})") from None
    try:
        model = cls.from_arrays(config, arrays)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: {_one_line(e)}") from None
    return model, meta


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200] + "..." if len(text) > 200 else text
