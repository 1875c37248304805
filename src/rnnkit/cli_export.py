"""``rnnkit export DIR OUT --format onnx|torch``: a trained model as ONNX graphs or as a
PyTorch module, for use outside rnnkit (the interface contract: README, "Export").

OUT is a directory written whole: built in a temporary folder beside it and renamed into
place, so a failure leaves nothing half-written; an existing OUT is replaced only with
``--force``.  A model or option the format cannot express is refused in one line (exit 2).
"""

from __future__ import annotations

import sys



def register(sub) -> None:
    p = sub.add_parser(
        "export", help="write a trained model as ONNX or as a PyTorch module",
        description="Export a model directory (any kind: language model, classifier, tagger, "
                    "seq2seq, generator) into the directory OUT: ONNX graphs checked by "
                    "onnx.checker (model.onnx; seq2seq encoder.onnx + decoder.onnx), or "
                    "model.safetensors + model.py for PyTorch.")
    p.add_argument("model", metavar="DIR", help="model directory (holds model.safetensors)")
    p.add_argument("out", metavar="OUT", help="directory to create")
    p.add_argument("--format", default="onnx", metavar="FORMAT",
                   help="onnx (default) or torch")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-check", action="store_true",
                   help="onnx: skip running the graphs in ONNX Runtime against rnnkit before "
                        "writing (done by default when onnxruntime is installed)")
    p.add_argument("--dtype", default=None, metavar="TYPE",
                   help="onnx only: float type of the graph, float32 or float64 (default: the "
                        "model's; ONNX Runtime runs its recurrent operators in float32 only)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from .export import FORMATS as known, export

    if args.format not in known:
        raise ValueError(f"unknown export format {args.format!r}: choose one of "
                         f"{', '.join(known)}")
    if args.dtype is not None and args.dtype not in ("float32", "float64"):
        raise ValueError(f"--dtype must be float32 or float64, got {args.dtype!r}")
    from .export._verify import ExportCheckFailed

    try:
        paths = export(args.model, args.out, args.format, force=args.force, dtype=args.dtype,
                       check=not args.no_check)
    except ExportCheckFailed as e:
        print(f"rnnkit export: error: {e}", file=sys.stderr)
        return 1
    names = ", ".join(p.name for p in paths)
    note = "" if paths.checked is None else \
        f" (ONNX Runtime agrees with rnnkit within {paths.checked:.1g})"
    print(f"wrote {args.out}: {names}{note}")
    if args.format == "onnx" and args.dtype is None and _is_float64(paths):
        print("note: float64 graph; ONNX Runtime's CPU LSTM/GRU/RNN run float32 only "
              "(--dtype float32 exports one it runs)", file=sys.stderr)
    return 0


def _is_float64(paths) -> bool:
    import onnx

    m = onnx.load(str(paths[0]), load_external_data=False)
    return any(i.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE for i in m.graph.output)
