"""A trained language model on disk: ``DIR/model.safetensors`` holds the weights, the model
config, the vocabulary and the tokenizer settings, so the directory rebuilds itself
(``load_model(DIR)``) and can never run code (safetensors + JSON, see
:mod:`rnnkit.checkpoint`).  ``DIR/checkpoint.safetensors`` is the resumable training state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..data.tokenize import get_tokenizer
from ..data.vocab import Vocab
from ..models.language_model import LanguageModel, LMConfig

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
KIND = "language_model"


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
    arrays = {k: np.ascontiguousarray(v) for k, v in model.params.items()}
    return save_checkpoint(path, arrays, bundle_meta(model, vocab, level, tokenizer_options or {}, info))


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
    _check_sizes(config, arrays, where)
    try:
        model = LanguageModel(config, seed=0)
        weights = {k: v for k, v in arrays.items() if k in model.params}
        model.load_params(weights)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None
    bad = sorted(k for k, v in model.params.items() if not np.isfinite(v).all())
    if bad:
        raise CheckpointError(f"{where}: weights hold NaN or Inf ({', '.join(bad[:3])}"
                              f"{', ...' if len(bad) > 3 else ''}); the model is unusable")
    return LMBundle(model, vocab, level, options, meta.get("info") or {})


_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def _check_sizes(config: LMConfig, arrays: dict, where) -> None:
    """Refuse a config that does not match the arrays stored beside it, before allocating.

    The checksum is no signature: a hand-made file can carry a matching one with a config
    asking for hidden_size 10**9.  Checking the largest arrays' shapes (and the layer count
    against the number of arrays) first bounds what the model allocates by the file's size.
    """
    V, E, H, L = config.vocab_size, config.embed_dim, config.hidden_size, config.num_layers
    if L > len(arrays):
        raise CheckpointError(f"{where}: the config names {L} layers, the file holds only "
                              f"{len(arrays)} arrays")
    expected = {"embed.weight": (V, E), "out.weight": (V, H),
                f"rnn.weight_hh_l{L - 1}": (_GATES[config.cell] * H, H)}
    for name, shape in expected.items():
        a = arrays.get(name)
        if a is None:
            raise CheckpointError(f"{where}: parameter {name} is missing")
        if tuple(a.shape) != shape:
            raise CheckpointError(f"{where}: parameter {name} must have shape {shape} by the "
                                  f"model config, the file holds {tuple(a.shape)}")


def load_model(path) -> LMBundle:
    """Load ``DIR`` (its ``model.safetensors``) or a model file directly."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such model directory or file")
    file = path / MODEL_FILE if path.is_dir() else path
    if path.is_dir() and not file.exists():
        raise ValueError(f"{path}: no {MODEL_FILE} in this directory (train a model into it first)")
    arrays, meta = load_checkpoint(file)
    return bundle_from(arrays, meta, file)
