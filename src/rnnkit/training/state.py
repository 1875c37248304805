"""The one training-state layout (``checkpoint.safetensors``) and the one resume check.

Arrays: ``param/NAME`` (weights), ``opt/SLOT/NAME`` (optimizer moments), ``best/NAME`` (the
best weights by held-out loss, when kept) and the batch source's own arrays (``state/h``,
``state/c`` for a language model's carried state; ``order/indices``, ``order/bounds`` for a
task's epoch order).  Meta (JSON): ``kind`` ``"rnnkit.training"``, ``step``, ``steps``,
``world_size`` (the processes the run was trained on) and ``data_split`` (how each global
batch was shared among them), ``optimizer`` and ``scheduler``
scalars, ``source`` (the source's JSON state), ``best_val``, ``best_step``, ``val_loss``,
``running`` (training losses since the last record), ``history`` (the records so far),
``skipped``, ``seconds``, and ``run``: what the caller says makes the run this run
(``task``, ``options``, ``data_sha256``, ``val_sha256``, and anything else it needs back).
"""

from __future__ import annotations

import math

from .. import _checks
from ..checkpoint import CheckpointError, load_checkpoint

STATE_KIND = "rnnkit.training"


def load_training_state(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` of a training checkpoint; CheckpointError for a file that is not one."""
    arrays, meta = load_checkpoint(path)
    if meta.get("kind") != STATE_KIND:
        raise CheckpointError(f"{path}: is not a training checkpoint "
                              f"(kind {str(meta.get('kind'))[:40]!r})")
    return arrays, meta


def check_resume(path, meta: dict, *, task: str, options: dict, resumable=(),
                 world_size: int = 1, steps: int | None = None) -> None:
    """ValueError (one line, starting ``--resume:``) unless ``meta`` is the state of a run
    of ``task`` made with ``options`` (keys in ``resumable`` may change) on ``world_size``
    processes, at a step not past ``steps``.  Data is checked by :func:`check_resume_data`."""
    if meta.get("kind") != STATE_KIND:
        raise ValueError(f"--resume: {path} is not a training checkpoint")
    run = meta.get("run")
    if not isinstance(run, dict) or run.get("task") != task:
        raise ValueError(f"--resume: {path} is not the training state of a {task} model")
    saved = run.get("options")
    if not isinstance(saved, dict):
        raise ValueError(f"--resume: {path} holds no run options")
    diff = sorted(k for k in options if k not in resumable and saved.get(k) != options[k])
    if diff:
        shown = ", ".join(f"--{k.replace('_', '-')} ({_short(saved.get(k))} -> "
                          f"{_short(options[k])})" for k in diff)
        raise ValueError(f"--resume: options differ from the checkpoint's: {shown}")
    k = meta.get("world_size", 1)
    if k != world_size:
        raise ValueError(f"--resume: this run was trained on {_short(k)} process(es); resume "
                         f"it on as many (mpiexec -n {_short(k)}), not {world_size}")
    step = meta.get("step")
    if steps is not None and isinstance(step, int) and not isinstance(step, bool) \
            and step > steps:
        raise ValueError(f"--resume: the checkpoint is at step {step}, past the {steps} steps "
                         f"asked for (give --steps {step} or more)")


def check_resume_data(meta: dict, digests: dict) -> None:
    """ValueError unless the training (and validation) data digests are the run's."""
    run = meta.get("run") or {}
    if run.get("data_sha256") != digests.get("data_sha256"):
        raise ValueError("--resume: the training data differs from the data this run "
                         "started on")
    if run.get("val_sha256") != digests.get("val_sha256"):
        raise ValueError("--resume: the validation data differs from the data this run "
                         "started on" + ("" if digests.get("val_sha256") else
                                         " (give the same --val)"))


def optional_float(x, name):
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number or null, got {_short(x)}")
    return float(x)


def check_arrays_like(arrays: dict, params: dict, what: str) -> None:
    import numpy as np

    missing = sorted(set(params) - set(arrays))
    extra = sorted(set(arrays) - set(params))
    if missing or extra:
        raise ValueError(f"{what}: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in arrays.items():
        if v.shape != params[k].shape or v.dtype != params[k].dtype:
            raise ValueError(f"{what}: {k} is {v.dtype.name} {v.shape}, the model's "
                             f"{params[k].dtype.name} {params[k].shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{what}: {k} holds NaN or Inf")


def check_step(x, name="step") -> int:
    return _checks.check_positive_int(x, name, minimum=0)


def _short(x, limit=40) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."
