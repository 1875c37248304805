"""What every model shares: a config dataclass, named blocks, one flat parameter dict, the
shapes a config implies, the checks a stored model passes, and save/load.

A model is a handful of blocks (``Embedding``, ``RecurrentLayer``, ``Linear``, a
:class:`~rnnkit.layers.decoder.Decoder`'s parts) whose parameters are exposed as one flat
dict with dotted names ("rnn.weight_ih_l0", "out.bias"), the keys ``backward`` returns
gradients under.  The config is a dataclass that validates itself when built and goes into
the model file as JSON, so a model file rebuilds its model.

Shapes: N batch, T time, D input, E embedding, H hidden, L layers, K directions, G gates.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import _checks
from ..cells import check_cell, gate_count
from ..data.vocab import EOS as _EOS_TOKEN, PAD as _PAD_TOKEN, SPECIALS

DTYPES = _checks.DTYPES
# The ids rnnkit.data.Vocab gives its specials (<pad> 0, <unk> 1, <eos> 2).  <eos> doubles as
# the start symbol of every decoder (as in fairseq): one special token serves both ends.
EOS = SPECIALS.index(_EOS_TOKEN)
PAD = SPECIALS.index(_PAD_TOKEN)


def config_from_json(cls, obj):
    """Rebuild a config dataclass from its JSON dict; unknown or missing keys are errors."""
    if not isinstance(obj, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(obj).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(obj) - names)
    if extra:
        raise ValueError(f"{cls.__name__}: unexpected keys {extra} (unknown keys are refused)")
    try:
        return cls(**obj)
    except TypeError as e:
        raise ValueError(f"{cls.__name__}: {e}") from None


def config_to_json(cfg) -> dict:
    return dataclasses.asdict(cfg)


class Config:
    """Base of the config dataclasses: checks itself when built (``__post_init__``).

    Subclasses list their size fields in ``positive`` and add their own rules in
    ``check``; ``cell``, ``dtype`` and ``dropout`` are checked wherever a config has them.
    """

    positive: tuple = ()
    # Fields that bound the work a model asks for (decoding lengths) -> their largest value in
    # a model file: checked by the loaders (check_file_limits), not when a user builds one.
    file_limits: dict = {}

    def __post_init__(self):
        self.validate()

    def validate(self):
        if hasattr(self, "cell"):
            check_cell(self.cell)
        if hasattr(self, "dtype"):
            _checks.check_choice(self.dtype, "dtype", DTYPES)
        _checks.check_positive_fields(self, self.positive)
        _checks.check_probability(getattr(self, "dropout", 0.0), "dropout")
        self.check()
        return self

    def check(self) -> None:
        """Rules of one config beyond the shared ones."""

    def check_file_limits(self) -> None:
        """A config read from a file may not ask for unbounded work (a forged
        ``max_target_len`` of 10**12 would make decoding run for ever)."""
        for name, top in self.file_limits.items():
            if getattr(self, name) > top:
                raise ValueError(f"{name} {getattr(self, name)} is over the limit {top}")

    def to_json(self) -> dict:
        return config_to_json(self)

    @classmethod
    def from_json(cls, obj):
        return config_from_json(cls, obj)


def recurrent_shapes(prefix, input_size, hidden_size, num_layers, cell, bidirectional) -> dict:
    """The parameter shapes of a ``RecurrentLayer`` (biases on, PyTorch's names and layout),
    computed without building it: ``{"PREFIX.weight_ih_l0": (G*H, D), ...}``."""
    G, H, K = gate_count(cell), hidden_size, 2 if bidirectional else 1
    shapes = {}
    for layer in range(num_layers):
        D = input_size if layer == 0 else K * H
        for d in range(K):
            s = f"l{layer}" + ("_reverse" if d else "")
            shapes.update({f"{prefix}.weight_ih_{s}": (G * H, D),
                           f"{prefix}.weight_hh_{s}": (G * H, H),
                           f"{prefix}.bias_ih_{s}": (G * H,), f"{prefix}.bias_hh_{s}": (G * H,)})
    return shapes


def check_names(expected, given, what: str) -> None:
    """The parameter names ``given`` must be those ``expected``: one line naming a few of the
    missing and unexpected ones."""
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    if missing or extra:
        raise ValueError(f"parameters do not match {what}: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}")


def check_stored_params(expected: dict, arrays: dict) -> None:
    """Refuse stored arrays that do not fit the shapes a config implies, or hold NaN/Inf.

    ``expected`` comes from a model class's ``param_shapes(config)``: plain arithmetic on the
    config, so a forged config asking for ``hidden_size`` 10**9 is refused here, before the
    model would allocate anything.  ValueError with a one-line message.
    """
    check_names(expected, arrays, "the model config")
    for name, shape in expected.items():
        a = arrays[name]
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"parameter {name} must have shape {tuple(shape)} by the model "
                             f"config, the file holds {tuple(a.shape)}")
        if a.dtype.kind != "f":
            raise ValueError(f"parameter {name} must hold floats, the file holds {a.dtype.name}")
    bad = sorted(k for k, a in arrays.items() if not np.isfinite(a).all())
    if bad:
        raise ValueError(f"weights hold NaN or Inf ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}); the model is unusable")


class Model:
    """Base of every model: named blocks; ``params`` is their flat dotted view.

    Subclasses set ``config_class`` and ``kind``, fill ``self.blocks`` (name -> object with a
    ``params`` dict) in ``__init__`` and define ``param_shapes(config)``.
    """

    config_class = None
    kind = "model"

    def __init__(self):
        self.blocks = {}

    @property
    def dtype(self):
        return np.dtype(self.config.dtype)

    @property
    def params(self) -> dict:
        """Flat dict ``"block.name" -> array`` sharing memory with the blocks."""
        return {f"{b}.{k}": v for b, blk in self.blocks.items() for k, v in blk.params.items()}

    def load_params(self, flat: dict) -> None:
        """Copy arrays (an optimizer's, a checkpoint's) into the parameters, in place.

        Every key must be present with the right shape; values are cast to the model dtype.
        """
        mine = self.params
        check_names(mine, flat, "the model")
        for name, cur in mine.items():
            v = np.asarray(flat[name])
            if v.shape != cur.shape:
                raise ValueError(f"parameter {name} must have shape {cur.shape}, got {v.shape}")
            cur[...] = v

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    @staticmethod
    def prefixed(name: str, grads: dict) -> dict:
        return {f"{name}.{k}": v for k, v in grads.items()}

    def to_json(self) -> dict:
        return {"kind": self.kind, "config": config_to_json(self.config)}

    @staticmethod
    def param_shapes(config) -> dict:
        """Name -> shape of every parameter, from the config alone (nothing is allocated)."""
        raise NotImplementedError

    # ---- model files -------------------------------------------------------------------
    def save(self, path, kind: str, meta: dict):
        """Write the weights and ``{"kind", "config", **meta}`` atomically to ``path``."""
        from ..checkpoint import save_checkpoint

        arrays = {k: np.ascontiguousarray(v) for k, v in self.params.items()}
        return save_checkpoint(path, arrays, {"kind": kind, "config": config_to_json(self.config),
                                              **meta})

    @classmethod
    def check_stored(cls, config, arrays: dict) -> None:
        """Refuse stored arrays that do not fit ``config`` (before anything is allocated)."""
        layers = getattr(config, "num_layers", 0)
        if layers > len(arrays):
            # Checked first: the shapes of 10**9 layers would themselves fill the memory.
            raise ValueError(f"the config names {layers} layers, the file holds only "
                             f"{len(arrays)} arrays")
        check_stored_params(cls.param_shapes(config), arrays)

    @classmethod
    def load(cls, path, kind: str | None = None):
        """``(model, meta)`` from a file :meth:`save` wrote with ``kind`` (default
        ``"rnnkit.KIND"``); the config and arrays checked before anything is allocated.
        ValueError (CheckpointError) with one line naming the file."""
        from ..checkpoint import CheckpointError, load_checkpoint

        arrays, meta = load_checkpoint(path)
        kind = kind or f"rnnkit.{cls.kind}"
        if meta.get("kind") != kind:
            raise CheckpointError(f"{path}: holds a {str(meta.get('kind'))[:40]!r} model, "
                                  f"not a {kind!r} one")
        try:
            config = config_from_json(cls.config_class, meta.get("config"))
            config.check_file_limits()
            return cls.from_arrays(config, arrays), meta
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: {e}") from None

    @classmethod
    def from_arrays(cls, config, arrays: dict):
        """The model ``config`` describes, holding the stored ``arrays`` (checked first)."""
        cls.check_stored(config, arrays)
        model = cls(config)
        model.load_params(arrays)
        return model


__all__ = ["Config", "Model", "DTYPES", "EOS", "PAD", "check_stored_params", "config_from_json",
           "config_to_json", "recurrent_shapes"]
