"""One small :class:`Task` spec per kind of sequence task, looked up by name in :data:`TASKS`.

A spec says, for its kind, everything the commands and the training loop need to know: how
a TSV line parses, what the model file describes (vocabularies, labels, levels), how a
target is encoded, how examples become a batch, which model is built, how a prediction is
made and shown, and which held-out metrics are reported.  Nothing outside this file asks
which task it is running.

Targets are id arrays for every task (a label is a 1-element array), so they travel alike
(MPI broadcasts, digests).  Shapes: N batch, T time.
"""

from __future__ import annotations

import numpy as np

from ..data.batching import pad_sequences
from ..data.vocab import Vocab
from .data import LEVELS, join_tokens, split_tokens


def common_config(opts) -> dict:
    """The config fields every task model takes, from the train options."""
    return dict(embed_dim=opts.embed, hidden_size=opts.hidden, num_layers=opts.layers,
                cell=opts.cell, bidirectional=opts.bidirectional, dropout=opts.dropout,
                dtype="float32", seed=opts.seed)


def _lookup(table, y, where, what):
    if y not in table:
        raise ValueError(f"{where}: {what} {y!r} does not occur in the training data")
    return table[y]


def _check_level(level) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be 'char' or 'word', got {str(level)[:20]!r}")


class Task:
    """The base: what classify, tag and seq2seq have in common (a source vocabulary read at
    one level, targets from labels) and the interface the others fill in."""

    name = "task"
    label_word = "label"
    model_class = None
    decode_options: tuple = ()  # the keyword options predict() takes

    # ---- data ---------------------------------------------------------------------------
    def levels(self, opts) -> tuple:
        """(source level, target level) from the train options."""
        return ("word", "word")

    def parse(self, left, right, levels, where):
        """One TSV line's two fields -> ``(source tokens, output)``."""
        raise NotImplementedError

    def header_like(self, examples) -> str:
        """Why the first example looks like a column header ("" when it does not)."""
        return ""

    def describe(self, train, levels, path) -> dict:
        """The JSON description a model file keeps (vocabularies, labels, levels)."""
        labels = sorted({y for _, _, ys in train for y in self._labels_of(ys)})
        return {"vocab": Vocab.build(t for _, s, _ in train for t in s).to_json(),
                "labels": labels}

    @staticmethod
    def _labels_of(out) -> list:
        return [out] if isinstance(out, str) else list(out)

    def data_extra(self, train) -> dict:
        """What the model needs to know of the training data beyond the description."""
        return {}

    def target_encoder(self, meta):
        """``encode(example, where) -> target ids (int64 array)`` for a description."""
        lid = {y: i for i, y in enumerate(meta["labels"])}
        return lambda ex, where: np.array([_lookup(lid, y, where, self.label_word)
                                           for y in self._labels_of(ex[2])], dtype=np.int64)

    def encode(self, meta, examples, path):
        """``(sources, targets)``: id arrays of each example, errors naming ``path: line``."""
        vocab = self.source_vocab(meta)
        encode_target = self.target_encoder(meta)
        xs = [vocab.encode(s) for _, s, _ in examples]
        ys = [encode_target(ex, f"{path}: line {ex[0]}") for ex in examples]
        return xs, ys

    def source_vocab(self, meta) -> Vocab:
        v = meta["vocab"]
        return v if isinstance(v, Vocab) else Vocab.from_json(v)

    def source_level(self, meta) -> str:
        return meta.get("level", "word")

    # ---- model --------------------------------------------------------------------------
    def config(self, meta, opts, extra: dict):
        raise NotImplementedError

    def model_class_for(self, meta) -> type:
        """The model class a model file's description names (one per task but classify)."""
        return self.model_class

    def build_model(self, meta, opts, extra: dict | None = None):
        """The model for a description and the train options ``opts`` (embed, hidden,
        layers, cell, bidirectional, dropout, seed and the task's own, e.g. pooling);
        ``extra``: what the data says beyond ``meta`` (seq2seq: ``max_len``, the longest
        training target)."""
        return self.model_class(self.config(meta, opts, extra or {}))

    def check_description(self, config, meta) -> None:
        """Vocabularies, labels and levels of a model file, each against the config; replaces
        the vocabularies' JSON in ``meta`` by :class:`Vocab` objects."""
        meta["vocab"] = Vocab.from_json(meta["vocab"])
        if len(meta["vocab"]) != config.vocab_size:
            raise ValueError(f"vocab has {len(meta['vocab'])} tokens, the model "
                             f"{config.vocab_size}")
        labels = meta["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError("labels must be a list of strings")
        if len(labels) != self.num_outputs(config):
            raise ValueError(f"{len(labels)} labels, the model predicts {self.num_outputs(config)}")
        _check_level(meta.get("level", "word"))

    # ---- batches, predictions, metrics --------------------------------------------------
    def batch(self, xs, ys, idx) -> dict:
        """The batch of examples ``idx`` for ``model.batch_loss``."""
        raise NotImplementedError

    def count(self, ys, idx) -> int:
        """What the model's mean loss over batch ``idx`` is a mean over (its weight)."""
        return len(idx)

    def predict(self, model, ids, lengths, **options) -> list:
        raise NotImplementedError

    def show(self, pred, meta) -> str:
        """A prediction as the text ``predict`` prints."""
        raise NotImplementedError

    def metrics(self, preds, ys) -> dict:
        raise NotImplementedError


class Classify(Task):
    name = "classify"
    label_word = "label"

    @property
    def model_class(self):
        from ..models import SequenceClassifier

        return SequenceClassifier

    def levels(self, opts):
        return (opts.level, "word")

    def parse(self, left, right, levels, where):
        out = right.strip()
        if not out:
            raise ValueError(f"{where}: empty label")
        return split_tokens(left, levels[0]), out

    def header_like(self, examples):
        first = examples[0][2]
        if len(examples) > 2 and all(y != first for _, _, y in examples[1:]):
            return f"its label {first!r} occurs"
        return ""

    def describe(self, train, levels, path):
        meta = super().describe(train, levels, path)
        if len(meta["labels"]) < 2:
            raise ValueError(f"{path}: every example has the label {meta['labels'][0]!r}; a "
                             "classifier needs at least two labels")
        return {**meta, "level": levels[0]}

    def config(self, meta, opts, extra):
        from ..models import ClassifierConfig

        if getattr(opts, "model", "rnn") == "conv":
            from ..models.conv_classifier import ConvClassifierConfig

            pooling = getattr(opts, "pooling", "max")
            return ConvClassifierConfig(
                len(self.source_vocab(meta)), len(meta["labels"]), embed_dim=opts.embed,
                hidden_size=opts.hidden, num_layers=opts.layers,
                kernel_size=getattr(opts, "kernel", 5),
                pooling="mean" if pooling == "mean" else "max", dropout=opts.dropout,
                dtype="float32", seed=opts.seed)
        return ClassifierConfig(len(self.source_vocab(meta)), len(meta["labels"]),
                                pooling=getattr(opts, "pooling", "last"), **common_config(opts))

    def build_model(self, meta, opts, extra=None):
        config = self.config(meta, opts, extra or {})
        return self._class_of(config.to_json())(config)

    def model_class_for(self, meta):
        config = meta.get("config") if isinstance(meta, dict) else None
        return self._class_of(config if isinstance(config, dict) else {})

    def _class_of(self, config: dict):
        """The convolutional classifier's config says so (``architecture: conv``)."""
        if config.get("architecture") == "conv":
            from ..models.conv_classifier import ConvClassifier

            return ConvClassifier
        return self.model_class

    @staticmethod
    def num_outputs(config):
        return config.num_classes

    def batch(self, xs, ys, idx):
        ids, lengths = pad_sequences([xs[i] for i in idx])
        return {"ids": ids, "lengths": lengths, "labels": np.array([_label(ys[i]) for i in idx])}

    def predict(self, model, ids, lengths):
        return list(model.predict(ids, lengths))

    def show(self, pred, meta):
        return meta["labels"][int(pred)]

    def metrics(self, preds, ys):
        return {"val_accuracy": float(np.mean(np.array(preds) == np.array([_label(y) for y in ys])))}


def _label(y) -> int:
    """A classifier target: an int or its 1-element id array."""
    return int(np.asarray(y).reshape(-1)[0])


class Tag(Task):
    name = "tag"
    label_word = "tag"

    @property
    def model_class(self):
        from ..models import SequenceTagger

        return SequenceTagger

    def parse(self, left, right, levels, where):
        src, out = split_tokens(left, "word"), split_tokens(right, "word")
        if len(src) != len(out):
            raise ValueError(f"{where}: {len(src)} token(s) but {len(out)} tag(s); "
                             "each token needs exactly one tag")
        return src, out

    def header_like(self, examples):
        first = set(examples[0][2])
        rest = {t for _, _, ys in examples[1:] for t in ys}
        if len(examples) > 2 and first and not first & rest:
            return "its tags occur"
        return ""

    def config(self, meta, opts, extra):
        from ..models import TaggerConfig

        return TaggerConfig(len(self.source_vocab(meta)), len(meta["labels"]),
                            **common_config(opts))

    @staticmethod
    def num_outputs(config):
        return config.num_tags

    def batch(self, xs, ys, idx):
        ids, lengths = pad_sequences([xs[i] for i in idx])
        tags, _ = pad_sequences([ys[i] for i in idx])
        return {"ids": ids, "lengths": lengths, "tags": tags}

    def count(self, ys, idx):
        return sum(len(ys[i]) for i in idx)

    def predict(self, model, ids, lengths):
        return model.predict(ids, lengths)

    def show(self, pred, meta):
        return " ".join(meta["labels"][int(t)] for t in pred)

    def metrics(self, preds, ys):
        correct = sum(int((np.asarray(p) == np.asarray(y)).sum()) for p, y in zip(preds, ys))
        return {"val_token_accuracy": correct / sum(len(y) for y in ys)}


class Seq2SeqTask(Task):
    name = "seq2seq"
    decode_options = ("beam", "length_penalty", "max_len")

    @property
    def model_class(self):
        from ..models import Seq2Seq

        return Seq2Seq

    def levels(self, opts):
        return (opts.source_level, opts.target_level)

    def parse(self, left, right, levels, where):
        out = split_tokens(right, levels[1])
        if not out:
            raise ValueError(f"{where}: empty target")
        return split_tokens(left, levels[0]), out

    def describe(self, train, levels, path):
        return {"src_vocab": Vocab.build(t for _, s, _ in train for t in s).to_json(),
                "tgt_vocab": Vocab.build(t for _, _, y in train for t in y).to_json(),
                "source_level": levels[0], "target_level": levels[1]}

    def target_encoder(self, meta):
        vocab = _vocab(meta["tgt_vocab"])
        return lambda ex, where: np.asarray(vocab.encode(ex[2]), dtype=np.int64)

    def source_vocab(self, meta):
        return _vocab(meta["src_vocab"])

    def source_level(self, meta):
        return meta["source_level"]

    def config(self, meta, opts, extra):
        from ..models import Seq2SeqConfig

        # Room for outputs twice the longest training target, and some.
        return Seq2SeqConfig(len(self.source_vocab(meta)), len(_vocab(meta["tgt_vocab"])),
                             max_target_len=2 * extra["max_len"] + 10, **common_config(opts),
                             attention=getattr(opts, "attention", "none"))

    def data_extra(self, train) -> dict:
        return {"max_len": max(len(y) for _, _, y in train)}

    def check_description(self, config, meta):
        for key, size in (("src_vocab", config.src_vocab_size),
                          ("tgt_vocab", config.tgt_vocab_size)):
            meta[key] = Vocab.from_json(meta[key])
            if len(meta[key]) != size:
                raise ValueError(f"{key} has {len(meta[key])} tokens, the model {size}")
        for level in (meta["source_level"], meta["target_level"]):
            _check_level(level)

    def batch(self, xs, ys, idx):
        ids, lengths = pad_sequences([xs[i] for i in idx])
        return {"src": ids, "src_lengths": lengths, "targets": [ys[i] for i in idx]}

    def count(self, ys, idx):
        return sum(len(ys[i]) + 1 for i in idx)  # each target and its <eos>

    def predict(self, model, ids, lengths, beam=1, length_penalty=0.0, max_len=None):
        if beam == 1:
            return model.greedy(ids, lengths, max_len=max_len)
        return model.beam_search(ids, lengths, beam, max_len=max_len,
                                 length_penalty=length_penalty)

    def show(self, pred, meta):
        return join_tokens(meta["tgt_vocab"].decode(np.array(pred, dtype=np.int64)),
                           meta["target_level"])

    def metrics(self, preds, ys):
        from ..training.metrics import edit_distance

        exact = np.mean([list(p) == list(y) for p, y in zip(preds, ys)])
        errs = sum(edit_distance(p, list(y)) for p, y in zip(preds, ys))
        return {"val_exact_match": float(exact),
                "val_token_error_rate": errs / sum(len(y) for y in ys)}


def _vocab(v) -> Vocab:
    return v if isinstance(v, Vocab) else Vocab.from_json(v)


TASKS = {t.name: t for t in (Classify(), Tag(), Seq2SeqTask())}


def get_task(task) -> Task:
    """The spec of ``task`` (a name of :data:`TASKS`, or a spec itself)."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    return TASKS[task]
