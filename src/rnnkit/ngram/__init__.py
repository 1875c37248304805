"""N-gram language models: interpolated modified Kneser-Ney, ARPA files, perplexity.

The baseline every language-model paper reports against, built on the same word tokenizer,
vocabulary, ``<unk>`` and ``<eos>`` as rnnkit's neural models, so their perplexities on a
held-out text are directly comparable (same predictions, ``</s>`` included).  The ARPA files
load in KenLM (``kenlm.Model(path)``) and give the same probabilities.

    model = train_text(text, order=5, min_count=2)
    write_arpa(model, "kn5.arpa")
    evaluate_text(read_arpa("kn5.arpa"), held_out)["perplexity"]
"""

from __future__ import annotations

from ..data.tokenize import get_tokenizer
from ..data.vocab import Vocab
from .arpa import read_arpa, write_arpa
from .kneser_ney import NGramModel, sentence_ids, train_kneser_ney
from .query import encode_text, evaluate_text, log10_prob, next_word_distribution


def train_text(text: str, order: int = 3, *, min_count: int = 1, max_vocab: int | None = None,
               split_punct: bool = False, vocab: Vocab | None = None) -> NGramModel:
    """A Kneser-Ney model of ``order`` on ``text`` at word level.

    The vocabulary is built from ``text`` exactly as ``rnnkit train --level word`` builds it
    (``min_count``, ``max_vocab``), unless ``vocab`` is given (a neural model's, say).
    """
    tokenizer = get_tokenizer("word", split_punct=split_punct)
    if vocab is None:
        vocab = Vocab.build(tokenizer.tokenize(text), min_count, max_vocab)
    options = {"level": "word", "tokenizer_options": {"split_punct": bool(split_punct)}}
    return train_kneser_ney(sentence_ids(text, vocab, tokenizer), vocab, order, options)


__all__ = ["NGramModel", "train_text", "train_kneser_ney", "sentence_ids", "write_arpa",
           "read_arpa", "evaluate_text", "encode_text", "log10_prob", "next_word_distribution"]
