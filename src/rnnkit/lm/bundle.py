"""A trained language model on disk: ``DIR/model.safetensors`` holds the weights, the model
config, the vocabulary and the tokenizer settings, so the directory rebuilds itself
(``load_model(DIR)``) and can never run code (safetensors + JSON, see
:mod:`rnnkit.checkpoint`).  ``DIR/checkpoint.safetensors`` is the resumable training state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint
from ..data.tokenize import get_tokenizer
from ..data.vocab import Vocab
from ..models.language_model import LanguageModel, LMConfig

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
KIND = LanguageModel.kind


@dataclass
class LMBundle:
    """A model with what it takes to read and write text."""

    model: LanguageModel
    vocab: Vocab
    level: str
    tokenizer_options: dict
    info: dict

    @property
    def tokenizer(self):
        return get_tokenizer(self.level, **self.tokenizer_options)


def bundle_meta(model: LanguageModel, vocab: Vocab, level: str, tokenizer_options: dict,
                info: dict | None = None) -> dict:
    return {"kind": KIND, "config": model.config.to_json(), "vocab": vocab.to_json(),
            "level": level, "tokenizer_options": dict(tokenizer_options), "info": info or {}}


def save_model(path, model, vocab, level, tokenizer_options=None, info=None) -> Path:
    meta = bundle_meta(model, vocab, level, tokenizer_options or {}, info)
    return model.save(path, KIND, {k: v for k, v in meta.items() if k not in ("kind", "config")})


def bundle_from(arrays: dict, meta: dict, where) -> LMBundle:
    """Rebuild a bundle from a checkpoint's content; ValueError naming ``where`` if it does not fit."""
    if meta.get("kind") != KIND:
        raise CheckpointError(f"{where}: not a language model (kind {meta.get('kind')!r})")
    try:
        config = LMConfig.from_json(meta["config"])
        vocab = Vocab.from_json(meta["vocab"])
        level = meta["level"]
        options = meta.get("tokenizer_options") or {}
        get_tokenizer(level, **options)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: bad model description ({e})") from None
    if len(vocab) != config.vocab_size:
        raise CheckpointError(f"{where}: vocabulary has {len(vocab)} tokens, the model {config.vocab_size}")
    try:
        # Shapes against the config first, then NaN/Inf, then the model is built: a forged
        # config asking for hidden_size 10**9 is refused before anything is allocated.
        model = LanguageModel.from_arrays(config, arrays)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None
    return LMBundle(model, vocab, level, options, meta.get("info") or {})


def load_model(path) -> LMBundle:
    """Load ``DIR`` (its ``model.safetensors``) or a model file directly."""
    return bundle_from(*load_checkpoint_of(path))


def load_checkpoint_of(path) -> tuple[dict, dict, Path]:
    """``(arrays, meta, file)`` of ``DIR``'s model file (or of a model file), unchecked: what
    rank 0 broadcasts before every rank rebuilds the model with :func:`bundle_from`."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such model directory or file")
    file = path / MODEL_FILE if path.is_dir() else path
    if path.is_dir() and not file.exists():
        raise ValueError(f"{path}: no {MODEL_FILE} in this directory (train a model into it first)")
    arrays, meta = load_checkpoint(file)
    return arrays, meta, file
