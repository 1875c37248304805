"""A model directory -> ``(model, kind, info)`` through the project's own loaders, so an
export sees exactly the checks (config against arrays, NaN/Inf, vocabularies) that
``rnnkit sample`` or ``predict`` would."""

from __future__ import annotations

from pathlib import Path

MODEL_FILE = "model.safetensors"
# The task bundles' stored kinds -> export kinds.
TASK_KINDS = {"rnnkit.classify": ("classify", "classifier"), "rnnkit.tag": ("tag", "tagger"),
              "rnnkit.seq2seq": ("seq2seq", "seq2seq"),
              "rnnkit.generate": ("generate", "generator")}


def _task_loader():
    """The task-bundle loader: the one place that names its module."""
    from ..tasks.bundle import load_bundle

    return load_bundle


def _tokens(vocab):
    if vocab is None:
        return None
    return list(vocab.tokens) if hasattr(vocab, "tokens") else list(vocab)


def load_source(path) -> tuple:
    """``(model, kind, info)`` of a model directory (or its model file); info holds the
    vocabularies, labels and tokenization for the metadata.  ValueError (one line) when the
    path holds no model rnnkit can read."""
    from ..checkpoint import read_meta

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such model directory")
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{path}: no {MODEL_FILE} in this directory (nothing to export)")
    stored = read_meta(file).get("kind")  # the header only; the loader below checks it all
    if stored == "language_model":
        from ..lm.bundle import load_model

        b = load_model(file)
        info = {"vocab": _tokens(b.vocab), "level": b.level,
                "tokenizer_options": dict(b.tokenizer_options)}
        return b.model, "language_model", info
    if stored in TASK_KINDS:
        task, kind = TASK_KINDS[stored]
        model, meta = _task_loader()(file, task)
        if kind == "seq2seq":
            info = {"src_vocab": _tokens(meta.get("src_vocab")),
                    "tgt_vocab": _tokens(meta.get("tgt_vocab")),
                    "source_level": meta.get("source_level"),
                    "target_level": meta.get("target_level")}
        else:
            info = {"vocab": _tokens(meta.get("vocab")), "level": meta.get("level", "word")}
            info["tags" if kind == "tagger" else "labels"] = meta.get("labels")
        return model, kind, info
    shown = repr(stored) if len(repr(stored)) <= 40 else repr(stored)[:37] + "..."
    raise ValueError(f"{file}: holds a {shown} model, which rnnkit export does not know")
