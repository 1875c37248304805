"""Kneser-Ney n-grams: the estimate's properties, ARPA files KenLM reads the same, the CLI."""

import math

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.ngram import (encode_text, evaluate_text, log10_prob, next_word_distribution,
                          read_arpa, train_text, write_arpa)
from rnnkit.ngram.kneser_ney import _discounts


def _text(n_lines=400, seed=0):
    """Sentences from a small Markov chain over Zipf-distributed words (repeatable)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(120)]
    p = 1.0 / np.arange(1, 121)
    p /= p.sum()
    lines = []
    for _ in range(n_lines):
        k = int(rng.integers(1, 12))
        cur = int(rng.choice(120, p=p))
        out = [words[cur]]
        for _ in range(k - 1):
            # half the time a fixed successor, so higher orders matter
            cur = (cur * 7 + 3) % 120 if rng.random() < 0.5 else int(rng.choice(120, p=p))
            out.append(words[cur])
        lines.append(" ".join(out))
    return "\n".join(lines) + "\n"


def _scores_ours(model, line):
    sents, _ = encode_text(model, line)
    ctx, out = [model.words.index("<s>")], []
    for w in sents[0]:
        out.append(log10_prob(model, tuple(ctx), w))
        ctx.append(w)
    return out


@pytest.mark.parametrize("order", [2, 3, 5])  # KenLM loads bigrams and up
def test_kenlm_reads_our_arpa_with_the_same_probabilities(tmp_path, order):
    kenlm = pytest.importorskip("kenlm")
    model = train_text(_text(), order, min_count=2)
    path = write_arpa(model, tmp_path / "m.arpa")
    ken = kenlm.Model(str(path))
    assert ken.order == order
    held = _text(60, seed=1) + "w3 never-seen w5\n"
    checked = 0
    for line in held.splitlines():
        theirs = [s[0] for s in ken.full_scores(line, bos=True, eos=True)]
        ours = _scores_ours(model, line)
        assert len(theirs) == len(ours)
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
        checked += len(ours)
    assert checked > 300
    # the whole-text perplexity is KenLM's too (unknown words included, as <unk>)
    total = sum(s[0] for line in held.splitlines()
                for s in ken.full_scores(line, bos=True, eos=True))
    res = evaluate_text(model, held)
    assert res["tokens"] == checked
    assert abs(res["log10"] - total) < 1e-4 * checked
    assert res["unknown"] >= 1


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_gives_a_distribution(order):
    model = train_text(_text(), order, min_count=2)
    bos = model.words.index("<s>")
    rng = np.random.default_rng(3)
    contexts = [(bos,), (bos, 5), (7, 9, 12), tuple(rng.integers(3, 40, 3))]
    for ctx in contexts:
        p = next_word_distribution(model, ctx)
        p[bos] = 0.0  # <s> is never predicted (its stored -99 is a placeholder)
        assert abs(p.sum() - 1.0) < 1e-9, ctx
        assert (p[np.arange(len(p)) != bos] > 0).all()


def test_discounts_from_counts_of_counts():
    # t1=3, t2=2, t3=1, t4=1: Y = 3/7, D1 = 1 - 2Y(2/3), D2 = 2 - 3Y(1/2), D3+ = 3 - 4Y(1/1)
    D = _discounts(np.array([1, 1, 1, 2, 2, 3, 4, 9]))
    np.testing.assert_allclose(D, [3 / 7, 19 / 14, 9 / 7], rtol=1e-12)


def test_lower_orders_use_continuation_counts():
    # "francisco" is frequent but follows one word only; "the" is rarer but follows many.
    lines = ["san francisco"] * 12 + [f"x{i} the" for i in range(6)] + ["a b c"] * 2
    model = train_text("\n".join(lines) + "\n", 2)
    wid = {w: i for i, w in enumerate(model.words)}
    uni = model.logp[0]
    assert uni[wid["the"]] > uni[wid["francisco"]]
    # after an unseen context the backoff prefers "the" too
    assert log10_prob(model, (wid["c"],), wid["the"]) > log10_prob(model, (wid["c"],), wid["francisco"])
    # while after "san" "francisco" is nearly certain
    assert log10_prob(model, (wid["san"],), wid["francisco"]) > math.log10(0.8)


def test_same_vocabulary_and_tokens_as_the_neural_models():
    from rnnkit.data import Vocab, WordTokenizer

    text = _text(100)
    model = train_text(text, 3, min_count=3)
    vocab = Vocab.build(WordTokenizer().tokenize(text), 3)
    assert model.words[3:] == vocab.tokens[3:]
    assert model.words[:3] == ["<s>", "<unk>", "</s>"]
    res = evaluate_text(model, text)
    assert res["tokens"] == len(WordTokenizer().tokenize(text))  # one prediction per token


def test_arpa_round_trip_and_no_overwrite(tmp_path):
    model = train_text(_text(), 3, min_count=2)
    path = write_arpa(model, tmp_path / "m.arpa")
    back = read_arpa(path)
    assert back.words == model.words and back.order == 3
    for a, b in zip(model.grams, back.grams):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.logp, back.logp):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert back.options == model.options
    held = _text(30, seed=2)
    assert abs(evaluate_text(back, held)["log10"] - evaluate_text(model, held)["log10"]) < 1e-3
    with pytest.raises(ValueError, match="already exists"):
        write_arpa(model, path)
    write_arpa(model, path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.arpa"]  # no temporary left


@pytest.mark.parametrize("content, why", [
    ("just some text\n", "no \\\\data\\\\"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\n", "ends after 1 of the 2"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n\\end\\\n", "expected \\\\end\\\\"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\nx\t<s>\n-1\t</s>\n\\end\\\n", "not a number"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\t</s>\n\\end\\\n", "lack <s>"),
    ("\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n\n\\2-grams:\n"
     "-1\t<s> zzz\n\\end\\\n", "not among the unigrams"),
])
def test_malformed_arpa_is_one_clear_error(tmp_path, content, why):
    path = tmp_path / "bad.arpa"
    path.write_text(content)
    with pytest.raises(ValueError, match=why):
        read_arpa(path)


def test_cli_train_and_eval(tmp_path, capsys):
    corpus = tmp_path / "train.txt"
    corpus.write_text(_text())
    held = tmp_path / "held.txt"
    held.write_text(_text(50, seed=4))
    out = tmp_path / "kn3.arpa"
    assert main(["ngram", "train", str(corpus), "--order", "3", "--min-count", "2",
                 "--out", str(out)]) == 0
    assert out.exists()
    capsys.readouterr()
    assert main(["ngram", "eval", str(out), str(held), "--json"]) == 0
    import json

    res = json.loads(capsys.readouterr().out)
    expected = evaluate_text(train_text(_text(), 3, min_count=2), held.read_text())
    assert abs(res["perplexity"] - expected["perplexity"]) < 1e-3 * expected["perplexity"]
    # an existing file is not replaced without --force
    assert main(["ngram", "train", str(corpus), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args, why", [
    (["eval", "{held}", "{held}"], "not an ARPA file"),
    (["eval", "{tmp}/missing.arpa", "{held}"], "no such file"),
    (["train", "{held}", "--order", "0", "--out", "{tmp}/x.arpa"], "--order"),
    (["train", "{tmp}/missing.txt", "--out", "{tmp}/x.arpa"], "no such file"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args, why):
    held = tmp_path / "held.txt"
    held.write_text("a b c\n")
    args = [a.format(tmp=tmp_path, held=held) for a in args]
    assert main(["ngram", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert why in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "x.arpa").exists()


def test_cli_vocab_from_a_word_level_model(tmp_path, capsys):
    from rnnkit.data import Vocab, WordTokenizer
    from rnnkit.lm.bundle import save_model
    from rnnkit.models.language_model import LanguageModel, LMConfig

    text = _text()
    vocab = Vocab.build(WordTokenizer().tokenize(text), 5)  # a smaller vocabulary than min-count 1
    model = LanguageModel(LMConfig(vocab_size=len(vocab), hidden_size=8, embed_dim=4), seed=0)
    save_model(tmp_path / "lm.safetensors", model, vocab, "word")
    corpus = tmp_path / "c.txt"
    corpus.write_text(text)
    out = tmp_path / "kn.arpa"
    assert main(["ngram", "train", str(corpus), "--order", "2", "--out", str(out),
                 "--vocab-from", str(tmp_path / "lm.safetensors")]) == 0
    assert read_arpa(out).words[3:] == vocab.tokens[3:]
    save_model(tmp_path / "char.safetensors", model, vocab, "char")
    capsys.readouterr()
    assert main(["ngram", "train", str(corpus), "--out", str(tmp_path / "x.arpa"),
                 "--vocab-from", str(tmp_path / "char.safetensors")]) == 2
    assert "char-level model" in capsys.readouterr().err
