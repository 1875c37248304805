"""The options of ``rnnkit train`` (a dataclass; each field is also its command-line option).

Kept apart from :mod:`rnnkit.lm.train` so that building the command line imports nothing
heavy: ``rnnkit --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from ..training.options import option

# The names of rnnkit.cells.CELLS, spelled out so that building the command line does not
# import NumPy (a test holds the two equal).
CELL_NAMES = ("lstm", "gru", "rnn")


@dataclass
class TrainOptions:
    """Everything ``rnnkit train`` takes; saved in the checkpoint so ``--resume`` can check.

    Each field is also the command-line option of the same name (``--seq-len``, ...).
    """

    out: str = option(help="model directory to write", metavar="DIR", required=True)
    corpus: list = option([], "UTF-8 text files (default: the built-in corpus)",
                          positional=True, nargs="*", metavar="CORPUS")
    val: str | None = option(None, "held-out text (default: the corpus' last --val-fraction)",
                             metavar="FILE")
    val_fraction: float = option(0.05, "share of the corpus held out when there is no --val",
                                 type=float)
    cell: str = option("lstm", "recurrent cell", choices=CELL_NAMES)
    layers: int = option(2, "stacked recurrent layers", type=int)
    hidden: int = option(256, "hidden units per layer", type=int)
    embed: int = option(64, "embedding size", type=int)
    level: str = option("char", "token level", choices=("char", "word"))
    min_count: int = option(1, "word level: rarer words become <unk>", type=int)
    max_vocab: int | None = option(None, "most tokens in the vocabulary", type=int)
    seq_len: int = option(100, "tokens per chunk (truncated BPTT length)", type=int)
    batch: int = option(32, "parallel streams per step, the global batch over all MPI ranks",
                        type=int)
    steps: int = option(2000, "training steps", type=int)
    optimizer: str = option("adam", "optimizer", choices=("adam", "sgd"))
    lr: float = option(2e-3, "learning rate", type=float)
    clip: float = option(5.0, "global gradient-norm clip (0: off)", type=float)
    dropout: float = option(0.0, "dropout rate", type=float)
    lr_decay: float = option(0.5, "lr factor on a validation plateau (1: off)", type=float)
    patience: int = option(2, "evaluations without improvement before decaying", type=int)
    seed: int = option(0, "random seed", type=int)
    checkpoint_every: int = option(500, "steps between saves of the training state", type=int)
    eval_every: int = option(200, "steps between validations", type=int)
    log_every: int = option(50, "steps between progress records", type=int)
    val_tokens: int = option(200_000, "cap on held-out tokens evaluated at each check",
                             type=int)
    on_nonfinite: str = option("stop", "at a NaN/Inf loss or gradient: stop, or skip the step",
                               choices=("stop", "skip"))
    dtype: str = option("float32", "floating-point type", choices=("float32", "float64"))
    softmax: str = option("full", "output layer: the full softmax, or the adaptive softmax "
                          "(word level; Grave et al. 2017)", choices=("full", "adaptive"))
    cutoffs: str | None = option(None, "adaptive softmax: the word ids where the head and each "
                                 "cluster end, e.g. 2000,10000 (default: chosen from the word "
                                 "frequencies)", metavar="C1,C2,...")
    tie_embeddings: bool = option(False, "the output layer reuses the embedding matrix "
                                  "(through a projection when --embed != --hidden)", type=bool)
    sparse_embedding: bool = option(False, "word level: update only the embedding rows each "
                                    "batch reads (with Adam: torch.optim.SparseAdam's rule)",
                                    type=bool)

    def validate(self) -> None:
        import numpy as np

        from .. import _checks

        if not isinstance(self.out, (str, os.PathLike)):
            raise TypeError(f"out must be a directory path, got {self.out!r}")
        if not str(self.out):
            raise ValueError("--out must name a directory (an empty path would write into the "
                             "working directory)")
        if isinstance(self.corpus, (str, bytes, os.PathLike)) \
                or not isinstance(self.corpus, (list, tuple)) \
                or not all(isinstance(p, (str, os.PathLike)) for p in self.corpus):
            raise TypeError("corpus must be a list of file paths (empty: the built-in corpus), "
                            f"got {self.corpus!r}")
        if self.val is not None and not isinstance(self.val, (str, os.PathLike)):
            raise TypeError(f"val must be a file path or None, got {self.val!r}")
        for name in ("lr", "clip", "dropout", "val_fraction", "lr_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name.replace('_', '-')} must be a number, got {v!r}")
        _checks.check_positive_int(self.seed, "seed", minimum=0)
        _checks.check_positive_int(self.patience, "patience", minimum=0)
        for name in ("layers", "hidden", "embed", "seq_len", "batch", "steps", "checkpoint_every",
                     "eval_every", "log_every", "min_count", "val_tokens"):
            _checks.check_positive_int(getattr(self, name), name.replace("_", "-"))
        if self.max_vocab is not None:
            _checks.check_positive_int(self.max_vocab, "max-vocab", minimum=4)
        from ..cells import check_cell

        check_cell(self.cell)
        if self.level not in ("char", "word"):
            raise ValueError(f"unknown level {self.level!r}: expected char or word")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}: expected adam or sgd")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (self.clip >= 0 and math.isfinite(self.clip)):
            raise ValueError(f"clip must be >= 0 (0 disables clipping), got {self.clip}")
        _checks.check_probability(self.dropout, "dropout")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val-fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr-decay must lie in (0, 1], got {self.lr_decay}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on-nonfinite must be stop or skip, got {self.on_nonfinite!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        self.check_output_layer()

    def check_output_layer(self) -> None:
        """--softmax, --cutoffs, --tie-embeddings, --sparse-embedding (word-level output layers)."""
        if self.softmax not in ("full", "adaptive"):
            raise ValueError(f"unknown softmax {self.softmax!r}: expected full or adaptive")
        if self.softmax == "adaptive" and self.level != "word":
            raise ValueError("--softmax adaptive is for word-level models (--level word): a "
                             "character vocabulary is too small to split into clusters")
        if self.cutoffs is not None:
            if self.softmax != "adaptive":
                raise ValueError("--cutoffs belongs to --softmax adaptive")
            self.cutoff_list()
        for name in ("tie_embeddings", "sparse_embedding"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name.replace('_', '-')} must be true or false")
        if self.tie_embeddings and self.softmax != "full":
            raise ValueError("--tie-embeddings needs --softmax full: the adaptive softmax's "
                             "clusters have no (V, E) output matrix to share with the embedding")
        if self.sparse_embedding and self.level != "word":
            raise ValueError("--sparse-embedding is for word-level models (--level word)")

    def cutoff_list(self) -> list | None:
        """--cutoffs as a list of increasing positive ints (None: not given)."""
        if self.cutoffs is None:
            return None
        parts = str(self.cutoffs).split(",")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"--cutoffs must be comma-separated integers such as 2000,10000, "
                             f"got {self.cutoffs!r}") from None
        if values[0] < 1 or any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"--cutoffs must be positive and increasing, got {self.cutoffs!r}")
        return values

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
