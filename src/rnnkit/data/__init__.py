"""Data: text -> tokens -> ids -> batches.

``read_text`` / ``default_corpus`` give text, a tokenizer turns it into tokens (each line closed
by ``<eos>``), a :class:`Vocab` turns tokens into ids, and ids become batches:

- language models: :class:`StreamBatcher` lays the corpus out as N parallel streams; the
  training loop reads its chunks through :class:`rnnkit.training.sources.StreamSource`;
- sequence tasks: :func:`pad_sequences` pads a minibatch's id sequences (the task specs of
  :mod:`rnnkit.tasks` build every batch with it), in an order the training loop draws
  (:class:`rnnkit.training.sources.ExampleSource`: seeded, similar lengths together).
  :func:`padded_batches` / :func:`minibatch_indices` are the same padding over a plain
  shuffled order, for a loop of one's own.
"""

from .batching import (StreamBatcher, minibatch_indices, pad_sequences, padded_batches,
                       stream_batches)
from .corpus import (DEFAULT_CORPUS_BYTES, default_corpus, default_corpus_info, read_text,
                     split_validation)
from .tokenize import CharTokenizer, WordTokenizer, get_tokenizer, split_lines, tokenize_text
from .vocab import EOS, PAD, SPECIALS, UNK, Vocab

__all__ = [
    "Vocab", "PAD", "UNK", "EOS", "SPECIALS",
    "CharTokenizer", "WordTokenizer", "get_tokenizer", "tokenize_text", "split_lines",
    "read_text", "default_corpus", "default_corpus_info", "split_validation",
    "DEFAULT_CORPUS_BYTES",
    "StreamBatcher", "stream_batches", "pad_sequences", "minibatch_indices", "padded_batches",
]
