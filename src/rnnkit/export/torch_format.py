"""rnnkit models as PyTorch: a safetensors ``state_dict`` under PyTorch's own names plus the
generated module file (:mod:`.torch_source`) that builds the matching ``nn.Module``.

``model.safetensors``'s names are rnnkit's parameter names, which already are the
``state_dict`` names of the generated module (``embed.weight``, ``rnn.weight_ih_l0``, ...);
its header metadata holds the same ``rnnkit.*`` entries as an ONNX export.
"""

from __future__ import annotations

import types

import numpy as np

from .torch_source import module_source

WEIGHTS_FILE = "model.safetensors"
MODULE_FILE = "model.py"


def torch_names(model) -> dict:
    """``{PyTorch state_dict name: array}`` of the generated module.

    rnnkit's names already are PyTorch's, but for the adaptive softmax's clusters:
    ``out.tail.{i}.proj`` / ``.out`` are ``torch.nn.AdaptiveLogSoftmaxWithLoss``'s
    ``out.tail.{i}.0.weight`` / ``.1.weight``."""
    import re

    out = {}
    for k, v in model.params.items():
        m = re.fullmatch(r"out\.tail\.(\d+)\.(proj|out)", k)
        if m:
            k = f"out.tail.{m.group(1)}.{0 if m.group(2) == 'proj' else 1}.weight"
        out[k] = v
    return out


def weights_bytes(model, metadata: dict) -> bytes:
    """The safetensors file's bytes (written without torch)."""
    import safetensors.numpy

    arrays = {k: np.ascontiguousarray(v) for k, v in torch_names(model).items()}
    return safetensors.numpy.save(arrays, metadata={str(k): str(v) for k, v in metadata.items()})


def torch_files(model, kind: str, metadata: dict) -> dict:
    """``{file name: bytes}`` of a torch export."""
    return {MODULE_FILE: module_source(model, kind).encode("utf-8"),
            WEIGHTS_FILE: weights_bytes(model, metadata)}


def load_source(source: str, name: str = "rnnkit_exported"):
    """Run a generated module's source in a fresh module object (it is rnnkit's own output)."""
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def to_torch_module(model, kind: str):
    """The generated ``nn.Module`` with a copy of the model's weights, in eval mode."""
    import torch

    net = load_source(module_source(model, kind)).build()
    state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in torch_names(model).items()}
    net.load_state_dict(state)
    return net.eval()
