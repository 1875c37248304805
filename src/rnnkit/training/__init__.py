"""Training: one loop for every model, its checkpoint state, resume, and MPI data parallelism.

- :mod:`.loop`: :func:`train`, the one loop (steps, clipping, NaN/Inf stop or skip,
  evaluation and best weights, plateau schedule, checkpoints, Ctrl-C/SIGTERM, resume);
- :mod:`.sources`: where batches come from (a language model's stateful streams, a task's
  padded minibatches) and dropout masks that do not depend on the split;
- :mod:`.state`: the one checkpoint layout and the one resume check;
- :mod:`.fitting`: :func:`fit` for task models through the API;
- :mod:`.dist`: one process or K under ``mpiexec`` (mpi4py imported only then);
- :mod:`.rundir`: the output directory (lock, refusing users' files, stale temporaries);
- :mod:`.options`: command-line options generated from the options dataclasses.

Names are loaded on first use (PEP 562), so the command line can import the light modules
(:mod:`.options`, :mod:`.signals`) without NumPy.
"""

import importlib

_NAMES = {
    "train": "loop", "TrainResult": "loop", "NONFINITE_MODES": "loop",
    "fit": "fitting", "evaluate_loss": "fitting", "make_optimizer": "fitting",
    "make_scheduler": "fitting",
    "edit_distance": "metrics", "confusion_matrix": "metrics",
    "StopFlag": "signals", "TrainingError": "signals",
    "BatchOrder": "sources", "ExampleRNG": "sources", "ExampleSource": "sources",
    "StreamSource": "sources",
    "STATE_KIND": "state", "load_training_state": "state",
}

__all__ = [*_NAMES, "batch_indices"]


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def batch_indices(n, batch_size, rng, length_fn=None, bucket=50):
    """Endless minibatch index arrays over ``range(n)``, reshuffled every epoch."""
    from .sources import BatchOrder

    return BatchOrder(n, batch_size, rng, length_fn, bucket)
