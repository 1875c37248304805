"""Write the golden model files and the outputs they must give (tests/models/test_golden.py).

One tiny model of each kind — language model (char, word), classifier, tagger, seq2seq,
conditional generator, feed-forward — saved through rnnkit's own writers into
``tests/data/golden/KIND/model.safetensors``, and what each gives on fixed inputs in
``tests/data/golden/expected.json``.  The weights are the seeded initial ones, scaled up so
the outputs are far from uniform.

These files are written ONCE and committed: the test then proves that a saved model still
loads and gives the same numbers.  Regenerate them only for an intended change of the
numbers or of the file format (and say so in the commit):

    .venv/bin/python tests/data/make_golden.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "golden"

TEXT = "the cat sat on the mat.\nthe dog ran to the rug.\n"
CHAR_IDS = [[2, 5, 6, 7, 8, 9], [2, 10, 11, 5, 3, 4]]
SRC = [[3, 4, 5, 6], [5, 3, 0, 0]]
SRC_LENGTHS = [4, 2]


def scaled(model, factor=3.0):
    for p in model.params.values():
        p *= factor
    return model


def lm_outputs(bundle):
    from rnnkit.lm import generate
    from rnnkit.lm.score import score_sentences

    m, v, tok = bundle.model, bundle.vocab, bundle.tokenizer
    lp, _ = m.log_probs(np.array(CHAR_IDS) % len(v))
    scores = score_sentences(m, v, tok, ["the cat sat.", "a rug"])
    ids, total = generate.greedy(m, v, tok, "the ", 12)
    beam, btotal = generate.beam_search(m, v, tok, "the ", 3, 12)
    return {"log_probs": lp.tolist(),
            "score": [[r["logprob"], r["token_logprobs"]] for r in scores],
            "greedy": [ids.tolist(), total], "beam": [beam.tolist(), btotal]}


def task_outputs(kind, model):
    from rnnkit.models.target import decoder_io

    src, lengths = np.array(SRC), np.array(SRC_LENGTHS)
    if kind == "classifier":
        return {"proba": model.predict_proba(src, lengths).tolist()}
    if kind == "tagger":
        return {"logits": model.forward(src, lengths)[0].tolist()}
    if kind == "seq2seq":
        tin, _, tlen = decoder_io([[3, 4], [5]])
        return {"logits": model.forward(src, lengths, tin, tlen)[0].tolist(),
                "greedy": model.greedy(src, lengths, max_len=6),
                "beam": model.beam_search(src, lengths, 3, max_len=6, return_scores=True)}
    if kind == "generator":
        tin, _, tlen = decoder_io([[3, 4, 5], [4]])
        return {"logits": model.forward(np.array([0, 2]), tin, tlen)[0].tolist(),
                "greedy": model.generate(np.array([1, 2]), greedy=True, max_len=6)}
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    return {"logits": model.forward(x)[0].tolist()}


def build():
    from rnnkit.data import CharTokenizer, Vocab, WordTokenizer
    from rnnkit.lm.bundle import save_model
    from rnnkit.models import (ClassifierConfig, ConditionalGenerator, FeedForward,
                               FeedForwardConfig, GeneratorConfig, LanguageModel, LMConfig,
                               Seq2Seq, Seq2SeqConfig, SequenceClassifier, SequenceTagger,
                               TaggerConfig)
    from rnnkit.tasks import save_bundle

    small = dict(embed_dim=4, hidden_size=6, dtype="float64", seed=11)
    char_vocab = Vocab.build(CharTokenizer().tokenize(TEXT))
    word_vocab = Vocab.build(WordTokenizer().tokenize(TEXT))
    lms = {"lm_char": (LanguageModel(LMConfig(len(char_vocab), cell="lstm", num_layers=2,
                                              hidden_size=8, embed_dim=5), seed=1),
                       char_vocab, "char"),
           "lm_word": (LanguageModel(LMConfig(len(word_vocab), cell="gru", num_layers=1,
                                              hidden_size=7, embed_dim=4, dtype="float64"),
                                     seed=2), word_vocab, "word")}
    for name, (m, v, level) in lms.items():
        d = HERE / name
        d.mkdir(parents=True, exist_ok=True)
        save_model(d / "model.safetensors", scaled(m), v, level)
    vocab = Vocab.build("abcd").to_json()
    tasks = {
        "classifier": ("classify", SequenceClassifier(ClassifierConfig(
            7, 3, cell="gru", bidirectional=True, pooling="mean", **small)),
            {"vocab": vocab, "labels": ["A", "B", "C"], "level": "char"}),
        "tagger": ("tag", SequenceTagger(TaggerConfig(7, 3, cell="lstm", num_layers=2, **small)),
                   {"vocab": vocab, "labels": ["D", "N", "V"]}),
        "seq2seq": ("seq2seq", Seq2Seq(Seq2SeqConfig(7, 7, cell="lstm", bidirectional=True,
                                                     max_target_len=9, **small)),
                    {"src_vocab": vocab, "tgt_vocab": vocab, "source_level": "char",
                     "target_level": "char"}),
    }
    for name, (task, model, meta) in tasks.items():
        d = HERE / name
        d.mkdir(parents=True, exist_ok=True)
        save_bundle(d, task, scaled(model), meta)
    others = {"generator": ConditionalGenerator(GeneratorConfig(7, num_classes=3, cell="gru",
                                                                num_layers=2, **small)),
              "feedforward": FeedForward(FeedForwardConfig(4, 3, hidden_sizes=[5, 4],
                                                           activation="tanh", dtype="float64",
                                                           seed=11))}
    for name, model in others.items():
        d = HERE / name
        d.mkdir(parents=True, exist_ok=True)
        scaled(model).save(d / "model.safetensors", f"rnnkit.{model.kind}", {})


def outputs() -> dict:
    """What every golden file gives, read back through the public loaders."""
    from rnnkit.lm.bundle import load_model

    out = {name: lm_outputs(load_model(HERE / name)) for name in ("lm_char", "lm_word")}
    for name in ("classifier", "tagger", "seq2seq", "generator", "feedforward"):
        out[name] = task_outputs(name, load_golden(name))
    return out


def load_golden(name):
    """A golden task model back from its file (tasks through rnnkit.tasks.load_bundle, the
    others through Model.load)."""
    from rnnkit.models import ConditionalGenerator, FeedForward
    from rnnkit.tasks import load_bundle

    task = {"classifier": "classify", "tagger": "tag", "seq2seq": "seq2seq"}.get(name)
    if task:
        return load_bundle(HERE / name, task)[0]
    cls = {"generator": ConditionalGenerator, "feedforward": FeedForward}[name]
    return cls.load(HERE / name / "model.safetensors")[0]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    build()
    (HERE / "expected.json").write_text(json.dumps(outputs(), indent=1) + "\n",
                                        encoding="utf-8")
    print(f"wrote {HERE}")
