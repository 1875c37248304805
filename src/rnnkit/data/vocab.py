"""Vocabulary: a fixed token <-> id mapping built from training tokens.

Ids 0, 1, 2 are always the special tokens ``<pad>``, ``<unk>``, ``<eos>``, in that order,
whatever the corpus.  ``<pad>`` is 0 so that a zero-filled id array is already padding, and the
specials come first so that a vocabulary built with a larger ``max_size`` only appends ids:
every id below the smaller vocabulary's size means the same token in both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from .._checks import check_positive_int

PAD = "<pad>"
UNK = "<unk>"
EOS = "<eos>"
SPECIALS = (PAD, UNK, EOS)

FORMAT = "rnnkit.vocab"
FORMAT_VERSION = 1


class Vocab:
    """A token <-> id mapping of size V with ``<pad>`` = 0, ``<unk>`` = 1, ``<eos>`` = 2.

    Build one from training tokens with :meth:`build`; save it with :meth:`to_json` and
    restore it with :meth:`from_json`.  Regular tokens follow the specials, most frequent
    first, ties broken by the token string, so the same tokens always give the same ids.
    """

    pad_id = 0
    unk_id = 1
    eos_id = 2

    def __init__(self, tokens: Sequence[str]):
        """``tokens``: the V tokens in id order; the first three must be ``SPECIALS``."""
        tokens = list(tokens)
        _check_token_list(tokens)
        self._itos = tokens
        self._stoi = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, tokens: Iterable[str], min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Vocabulary of the tokens seen at least ``min_count`` times, at most ``max_size`` ids.

        ``max_size`` counts the three specials too, so ``V <= max_size``; the least frequent
        tokens are the ones left out (ties: the later token in string order goes first).
        Occurrences of the special strings themselves (the ``<eos>`` a tokenizer appends)
        are not counted: the specials are always present.
        """
        return cls.from_counts(Counter(tokens), min_count, max_size)

    @classmethod
    def from_counts(cls, counts, min_count: int = 1, max_size: int | None = None) -> Vocab:
        """:meth:`build` from token counts (a mapping token -> count, e.g. a tokenizer's
        ``count(text)``), so a corpus need never be held as a list of tokens."""
        min_count = check_positive_int(min_count, "min_count")
        if max_size is not None:
            max_size = check_positive_int(max_size, "max_size", minimum=len(SPECIALS))
        counts = dict(counts)
        for s in SPECIALS:
            counts.pop(s, None)
        for t in counts:
            if not isinstance(t, str):
                raise TypeError(f"tokens must be strings, got {type(t).__name__} {t!r}")
        kept = sorted((t for t, c in counts.items() if c >= min_count and t),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - len(SPECIALS)]
        return cls(list(SPECIALS) + kept)

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token) -> bool:
        return token in self._stoi

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self._itos == other._itos

    def __repr__(self) -> str:
        return f"Vocab(V={len(self)})"

    @property
    def tokens(self) -> list[str]:
        """The V tokens in id order (a copy)."""
        return list(self._itos)

    def id(self, token: str) -> int:
        """Id of one token; ``<unk>``'s id if the token is not in the vocabulary."""
        return self._stoi.get(token, self.unk_id)

    def token(self, i: int) -> str:
        """Token of one id; ValueError for an id outside [0, V)."""
        if not 0 <= int(i) < len(self._itos):
            raise ValueError(f"id {int(i)} is outside the vocabulary [0, {len(self._itos)})")
        return self._itos[int(i)]

    def encode(self, tokens: Iterable[str], return_unknown: bool = False):
        """Ids (M,) int64 of M tokens; unknown tokens map to ``<unk>``.

        With ``return_unknown=True`` returns ``(ids, n_unknown)``, where ``n_unknown`` counts
        the tokens that were not in the vocabulary (useful to report coverage of held-out
        text; a literal ``<unk>`` token is counted as unknown too).
        """
        get = self._stoi.get
        unk = self.unk_id
        ids = np.fromiter((get(t, unk) for t in tokens), dtype=np.int64)
        if return_unknown:
            return ids, int(np.count_nonzero(ids == unk))
        return ids

    @property
    def id_dtype(self) -> np.dtype:
        """The smallest integer dtype that holds every id: uint8 up to 256 tokens, uint16 up to
        65536, else int32.  Corpora are encoded in it (a 20 MB text is 20 MB of ids, not 160)."""
        return id_dtype(len(self._itos))

    def lookup(self) -> dict:
        """The token -> id dict itself (read-only by convention), for fast bulk encoding."""
        return self._stoi

    def decode(self, ids) -> list[str]:
        """Tokens of ids (M,) (any integer array-like); ValueError for an id outside [0, V)."""
        arr = np.asarray(ids)
        if arr.size == 0:
            return []
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise ValueError(f"ids must be a 1-D integer array (M,), got {arr.dtype.name} "
                             f"of shape {arr.shape}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= len(self._itos):
            bad = lo if lo < 0 else hi
            raise ValueError(f"id {bad} is outside the vocabulary [0, {len(self._itos)})")
        itos = self._itos
        return [itos[i] for i in arr.tolist()]

    def to_json(self) -> dict:
        """A JSON-serialisable dict that :meth:`from_json` turns back into an equal Vocab."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "tokens": list(self._itos)}

    @classmethod
    def from_json(cls, obj) -> Vocab:
        """Inverse of :meth:`to_json`; ValueError with a one-line message on any malformation."""
        if not isinstance(obj, dict):
            raise ValueError(f"vocab: expected a JSON object, got {type(obj).__name__}")
        expected = {"format", "format_version", "tokens"}
        if set(obj) != expected:
            extra = sorted(map(str, set(obj) - expected))
            missing = sorted(expected - set(obj))
            raise ValueError(f"vocab: bad keys (missing {missing}, unexpected {extra})")
        if obj["format"] != FORMAT:
            raise ValueError(f"vocab: format is {_short(obj['format'])}, expected {FORMAT!r}")
        version = obj["format_version"]
        if type(version) is not int:
            raise ValueError(f"vocab: format_version must be an integer, got {_short(version)}")
        if version != FORMAT_VERSION:
            raise ValueError(f"vocab: unsupported format_version {version} "
                             f"(this rnnkit reads {FORMAT_VERSION})")
        tokens = obj["tokens"]
        if not isinstance(tokens, list):
            raise ValueError(f"vocab: tokens must be a list, got {type(tokens).__name__}")
        _check_token_list(tokens)
        return cls(tokens)


def id_dtype(V: int) -> np.dtype:
    """Smallest dtype for ids in [0, V): uint8, uint16 or int32."""
    if V <= 1 << 8:
        return np.dtype(np.uint8)
    if V <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def _check_token_list(tokens: list) -> None:
    if list(tokens[: len(SPECIALS)]) != list(SPECIALS):
        raise ValueError(f"vocab: the first tokens must be {list(SPECIALS)}, "
                         f"got {_short(tokens[: len(SPECIALS)])}")
    seen = set()
    for i, t in enumerate(tokens):
        if not isinstance(t, str) or not t:
            raise ValueError(f"vocab: token {i} must be a non-empty string, got {_short(t)}")
        if t in seen:
            raise ValueError(f"vocab: token {i} {_short(t)} appears twice")
        seen.add(t)


def _short(x, limit: int = 60) -> str:
    # Error messages stay on one line and short, whatever a malformed file contains.
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."
