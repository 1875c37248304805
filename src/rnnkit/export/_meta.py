"""What is being exported: the model's kind, whether a format can express it, and the
metadata that travels with it (``metadata_props`` in ONNX, the safetensors header for torch).

Metadata keys (all values strings): ``rnnkit.kind``, ``rnnkit.config`` (JSON),
``rnnkit.vocab`` (JSON list, index = id: the vocabulary of this graph's ``ids``),
``rnnkit.level`` (char|word), ``rnnkit.tokenizer`` (JSON options, language models),
``rnnkit.labels`` (classifier, generator classes) / ``rnnkit.tags`` (tagger), for seq2seq
also ``rnnkit.src_vocab``, ``rnnkit.tgt_vocab``, ``rnnkit.source_level``,
``rnnkit.target_level``; ``rnnkit.graph`` names a file's role (model, encoder, decoder,
condition) and ``rnnkit.interface`` the contract's version.
"""

from __future__ import annotations

import dataclasses
import json

INTERFACE_VERSION = "1"
KINDS = ("language_model", "classifier", "tagger", "seq2seq", "generator")

# The config fields each exporter understands; any other field is a later addition (say an
# attention option) and must be at its default, else the export is refused rather than wrong.
KNOWN_FIELDS = {
    "language_model": {"vocab_size", "cell", "num_layers", "hidden_size", "embed_dim",
                       "dropout", "nonlinearity", "reset_after", "dtype",
                       "softmax", "cutoffs", "div_value", "tie_embeddings"},
    "classifier": {"vocab_size", "num_classes", "embed_dim", "hidden_size", "num_layers", "cell",
                   "bidirectional", "pooling", "dropout", "dtype", "seed"},
    "tagger": {"vocab_size", "num_tags", "embed_dim", "hidden_size", "num_layers", "cell",
               "bidirectional", "dropout", "dtype", "seed"},
    "seq2seq": {"src_vocab_size", "tgt_vocab_size", "embed_dim", "hidden_size", "num_layers",
                "cell", "bidirectional", "dropout", "max_target_len", "dtype", "seed",
                "attention"},
    "generator": {"vocab_size", "num_classes", "cond_dim", "embed_dim", "hidden_size",
                  "num_layers", "cell", "dropout", "max_len", "dtype", "seed"},
}
# Read from the recurrent layers themselves, whichever config carries them.
LAYER_FIELDS = {"nonlinearity", "reset_after", "merge_mode"}
POOLINGS = ("last", "mean", "max")
# The parameter blocks each exporter reads (parameter names are "block.name").
KNOWN_BLOCKS = {
    "language_model": {"embed", "rnn", "out"},
    "classifier": {"embed", "rnn", "out"},
    "tagger": {"embed", "rnn", "out"},
    "seq2seq": {"src_embed", "encoder", "bridge_h", "bridge_c", "tgt_embed", "decoder", "out",
                "attention", "attn_combine"},
    "generator": {"cond_h", "cond_c", "embed", "rnn", "out"},
}


class CannotExpress(ValueError):
    """The model has a kind or option the chosen format (or this exporter) cannot express."""


def kind_of(model) -> str:
    """'language_model', 'classifier', 'tagger', 'seq2seq' or 'generator' (by class: another
    model that calls itself a classifier, say a convolutional one, is not these graphs)."""
    from ..models import ConditionalGenerator, Seq2Seq, SequenceClassifier, SequenceTagger
    from ..models.language_model import LanguageModel

    classes = {LanguageModel: "language_model", SequenceClassifier: "classifier",
               SequenceTagger: "tagger", Seq2Seq: "seq2seq", ConditionalGenerator: "generator"}
    for cls, kind in classes.items():
        if type(model) is cls:
            return kind
    raise CannotExpress(f"rnnkit export handles language models, recurrent classifiers, "
                        f"taggers, seq2seq models and generators, not {type(model).__name__}")


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def attention_kind(model) -> str | None:
    """'additive' or 'general' for a seq2seq model with attention, else None."""
    kind = getattr(model.config, "attention", None)
    return None if kind in (None, "none", False) else kind


def recurrent_layers(model, kind: str) -> list:
    if kind == "seq2seq":
        return [model.encoder, model.decoder]
    return [model.rnn]


def check_expressible(model, kind: str, fmt: str) -> None:
    """CannotExpress (one line) for anything the exporter would otherwise get wrong."""
    cfg = model.config
    for f in dataclasses.fields(cfg):
        if f.name in KNOWN_FIELDS[kind] or f.name in LAYER_FIELDS:
            continue
        value, default = getattr(cfg, f.name), _default(f)
        if default is dataclasses.MISSING or value != default:
            raise CannotExpress(f"the {fmt} format cannot express a {kind} with "
                                f"{f.name}={value!r} (rnnkit export does not handle it)")
    unknown = sorted(k for k in model.params if k.split(".", 1)[0] not in KNOWN_BLOCKS[kind])
    if unknown:
        raise CannotExpress(f"the {fmt} format cannot express a {kind} with parameters "
                            f"{', '.join(unknown[:3])} (rnnkit export does not handle them)")
    if kind == "language_model" and getattr(cfg, "softmax", "full") not in ("full", "adaptive"):
        raise CannotExpress(f"the {fmt} format cannot express softmax={cfg.softmax!r}")
    if kind == "classifier" and cfg.pooling not in POOLINGS:
        raise CannotExpress(f"the {fmt} format cannot express pooling={cfg.pooling!r} "
                            f"(rnnkit export knows {', '.join(POOLINGS)})")
    for rnn in recurrent_layers(model, kind):
        if rnn.mode not in ("rnn", "gru", "lstm"):
            raise CannotExpress(f"the {fmt} format cannot express a {rnn.mode!r} layer")
        if fmt == "torch" and rnn.bidirectional and rnn.merge_mode != "concat":
            raise CannotExpress(f"the torch format cannot express merge_mode="
                                f"{rnn.merge_mode!r}: torch.nn concatenates the directions")


def _js(x) -> str:
    return json.dumps(x, ensure_ascii=False, separators=(",", ":"))


def metadata(model, kind: str, info: dict | None) -> dict:
    """The ``rnnkit.*`` metadata of an export.

    ``info`` (from the model directory, or given to the API): any of ``vocab`` (token list),
    ``level``, ``tokenizer_options``, ``labels``, ``tags``, ``src_vocab``, ``tgt_vocab``,
    ``source_level``, ``target_level``.  Missing pieces are left out.
    """
    info = dict(info or {})
    meta = {"rnnkit.kind": kind, "rnnkit.interface": INTERFACE_VERSION,
            "rnnkit.config": _js(dataclasses.asdict(model.config))}
    for key in ("vocab", "src_vocab", "tgt_vocab", "labels", "tags"):
        if info.get(key) is not None:
            meta[f"rnnkit.{key}"] = _js(list(info[key]))
    for key in ("level", "source_level", "target_level"):
        if info.get(key) is not None:
            meta[f"rnnkit.{key}"] = str(info[key])
    if info.get("tokenizer_options") is not None:
        meta["rnnkit.tokenizer"] = _js(info["tokenizer_options"])
    meta["rnnkit.graph"] = "model"
    return meta


def for_graph(meta: dict, role: str) -> dict:
    """A copy of ``meta`` for one file of a two-file export: ``rnnkit.vocab`` and
    ``rnnkit.level`` describe that file's ``ids`` (source for the encoder, target for a
    decoder)."""
    out = dict(meta, **{"rnnkit.graph": role})
    side = {"encoder": ("src_vocab", "source_level"), "decoder": ("tgt_vocab", "target_level")}
    if role in side and meta.get("rnnkit.kind") == "seq2seq":
        v, lv = side[role]
        for src, dst in ((f"rnnkit.{v}", "rnnkit.vocab"), (f"rnnkit.{lv}", "rnnkit.level")):
            if src in meta:
                out[dst] = meta[src]
    return out
