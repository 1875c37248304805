"""Export trained models to ONNX and PyTorch, for every kind rnnkit trains.

- ``export(source, out, format)``: a model directory (or a model object) -> the directory
  ``out``: ONNX graphs (``model.onnx``; seq2seq ``encoder.onnx`` + ``decoder.onnx``;
  generator ``condition.onnx`` + ``decoder.onnx``) or, for ``torch``, ``model.safetensors``
  plus the generated ``model.py``.  The interface contract is in the README ("Export") and
  :mod:`rnnkit.export.onnx_format`.
- ``to_torch(model)``: the same generated ``torch.nn.Module`` in memory, with the weights.

``onnx`` is an optional dependency (``pip install 'rnnkit[onnx]'``); writing the torch
format needs no torch, running it (and ``to_torch``) does.
"""

from __future__ import annotations

FORMATS = ("onnx", "torch")
ONNX_LIMIT = 2**31 - 2**24  # bytes of weights: protobuf's 2 GiB less room for the graph


class MissingDependency(ValueError):
    """An optional package the export needs is not installed (one line naming the pip command)."""


def _require(fmt: str) -> None:
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise MissingDependency("the onnx format needs the onnx package: "
                                    "pip install 'rnnkit[onnx]'") from None
    elif fmt == "torch-runtime":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise MissingDependency("to_torch needs PyTorch: pip install torch") from None


def _check_format(fmt) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def export_files(model, fmt: str, info: dict | None = None, dtype=None) -> dict:
    """``{file name: bytes}`` of an export of ``model`` (nothing written).

    ``info``: vocabularies, labels and levels for the metadata (see :func:`._meta.metadata`).
    ``dtype``: the ONNX graph's float type (default the model's).
    """
    from ._meta import CannotExpress, check_expressible, kind_of, metadata

    _check_format(fmt)
    kind = kind_of(model)
    check_expressible(model, kind, fmt)
    meta = metadata(model, kind, info)
    if fmt == "onnx":
        _require("onnx")
        if dtype is not None and str(dtype) not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        itemsize = 4 if str(dtype) == "float32" else model.dtype.itemsize
        size = sum(p.size for p in model.params.values()) * itemsize
        if size >= ONNX_LIMIT:  # one protobuf message; this exporter writes no external data
            raise CannotExpress(f"the onnx format cannot express a model of {size / 2**30:.1f} "
                                "GiB in one file (protobuf's 2 GiB limit)")
        from .onnx_format import onnx_models

        return {name: proto.SerializeToString()
                for name, proto in onnx_models(model, kind, meta, dtype).items()}
    if dtype is not None:
        raise ValueError("dtype applies to the onnx format only (torch runs float64 as it is)")
    from .torch_format import torch_files

    return torch_files(model, kind, meta)


class Written(list):
    """The paths an export wrote; ``checked``: the largest difference between ONNX Runtime's
    outputs and rnnkit's on a test batch, or None where nothing was run."""

    checked = None


def export(source, out, fmt: str = "onnx", *, force: bool = False, dtype=None,
           info: dict | None = None, check: bool = True) -> Written:
    """Export ``source`` (a model directory or file, or a model object) into the directory
    ``out``; returns the written paths.

    ``out`` must not exist unless ``force`` (then the export in it is replaced).  Everything
    is built (and, for ONNX with ``check`` and onnxruntime installed, run against rnnkit on a
    small ragged batch) before anything is written, and written into a temporary folder
    renamed into place.  ValueError / OSError with one line for a bad source, format or
    target; :class:`._meta.CannotExpress` for a model the format cannot express;
    :class:`._verify.ExportCheckFailed` when ONNX Runtime disagrees with rnnkit.
    """
    from ._meta import kind_of
    from ._write import check_target, write_files

    _check_format(fmt)
    if fmt == "onnx":
        _require("onnx")  # before loading anything
    check_target(out, force)
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        from ._load import load_source

        model, _, loaded = load_source(source)
        info = {**loaded, **(info or {})}
    else:
        model = source
    files = export_files(model, fmt, info, dtype)
    checked = None
    if fmt == "onnx" and check:
        from ._verify import check_onnx

        checked = check_onnx(model, kind_of(model), files)
    written = Written(write_files(out, files, force))
    written.checked = checked
    return written


def to_torch(model):
    """The generated ``torch.nn.Module`` for ``model`` with a copy of its weights (eval mode).

    Its ``forward`` follows the export contract (a language model: ``ids, lengths, h0[, c0]
    -> log_probs, h_n[, c_n]``); seq2seq and generator modules have ``encode`` /
    ``initial_state`` and ``decode``.
    """
    from ._meta import check_expressible, kind_of
    from .torch_format import to_torch_module

    _require("torch-runtime")
    kind = kind_of(model)
    check_expressible(model, kind, "torch")
    return to_torch_module(model, kind)


__all__ = ["FORMATS", "MissingDependency", "Written", "export", "export_files", "to_torch"]
