"""Models, one file per topology, all on :class:`rnnkit.models.base.Model`."""

from .base import Config, Model
from .classifier import ClassifierConfig, SequenceClassifier
from .feedforward import FeedForward, FeedForwardConfig
from .generator import ConditionalGenerator, GeneratorConfig
from .language_model import LanguageModel, LMConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .tagger import SequenceTagger, TaggerConfig

__all__ = ["Config", "Model", "ClassifierConfig", "SequenceClassifier", "FeedForward",
           "FeedForwardConfig", "ConditionalGenerator", "GeneratorConfig", "LanguageModel",
           "LMConfig", "Seq2Seq", "Seq2SeqConfig", "SequenceTagger", "TaggerConfig"]
