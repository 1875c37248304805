"""Models, one file per topology."""

# Sequence-task models (many-to-one, many-to-many aligned / unaligned, one-to-many, one-to-one).
from .classifier import ClassifierConfig, SequenceClassifier  # noqa: E402
from .feedforward import FeedForward, FeedForwardConfig  # noqa: E402
from .generator import ConditionalGenerator, GeneratorConfig  # noqa: E402
from .seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402
from .tagger import SequenceTagger, TaggerConfig  # noqa: E402
