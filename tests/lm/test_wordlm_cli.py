"""The word-level LM options of ``rnnkit train`` (--softmax, --cutoffs, --tie-embeddings,
--sparse-embedding) end to end, and their bad input: one line, exit 2, nothing written."""

import json

import numpy as np
import pytest

from rnnkit.cli import main

SMALL = ["--steps", "3", "--hidden", "16", "--embed", "8", "--batch", "4", "--seq-len", "8",
         "--eval-every", "2", "--level", "word"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    p = 1.0 / np.arange(1, 301)
    p /= p.sum()
    lines = [" ".join(rng.choice(words, size=int(rng.integers(3, 12)), p=p)) for _ in range(400)]
    path = tmp_path_factory.mktemp("wordlm") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(tmp_path, corpus, *extra):
    out = tmp_path / "m"
    code = main(["train", str(corpus), "--out", str(out), *SMALL, *extra])
    return code, out


def test_adaptive_model_trains_and_serves_every_command(tmp_path, corpus, capsys):
    code, out = _train(tmp_path, corpus, "--softmax", "adaptive", "--cutoffs", "40,120",
                       "--sparse-embedding")
    assert code == 0
    from rnnkit.lm.bundle import load_model

    b = load_model(out)
    assert b.model.config.softmax == "adaptive" and b.model.config.cutoffs == [40, 120]
    capsys.readouterr()
    held = tmp_path / "held.txt"
    held.write_text("w1 w2 w3\nw4 w5\n")
    assert main(["eval", str(out), str(held), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["tokens"] == 7 and np.isfinite(ev["perplexity"])
    assert main(["score", str(out), "w1 w2 w3", "--json"]) == 0
    sc = json.loads(capsys.readouterr().out)[0]
    assert sc["predictions"] == 4
    assert main(["sample", str(out), "--length", "5", "--top-k", "4", "--top-p", "0.9",
                 "--temperature", "0.7", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["sample", str(out), "--beam", "3", "--length", "4"]) == 0


def test_default_cutoffs_come_from_the_word_frequencies(tmp_path, corpus):
    code, out = _train(tmp_path, corpus, "--softmax", "adaptive")
    assert code == 0
    from rnnkit.lm.bundle import load_model

    cfg = load_model(out).model.config
    assert cfg.cutoffs and all(0 < c < cfg.vocab_size for c in cfg.cutoffs)


def test_tied_embeddings_are_saved_once(tmp_path, corpus):
    code, out = _train(tmp_path, corpus, "--tie-embeddings")
    assert code == 0
    from rnnkit.checkpoint import load_checkpoint

    arrays, meta = load_checkpoint(out / "model.safetensors")
    assert "out.weight" not in arrays and arrays["out.proj"].shape == (8, 16)
    assert meta["config"]["tie_embeddings"] is True


@pytest.mark.parametrize("extra, why", [
    (["--level", "char", "--softmax", "adaptive"], "--softmax adaptive is for word-level"),
    (["--softmax", "adaptive", "--cutoffs", "40,100000"], "below the vocabulary size"),
    (["--softmax", "adaptive", "--cutoffs", "40,x"], "comma-separated integers"),
    (["--softmax", "adaptive", "--cutoffs", "90,40"], "positive and increasing"),
    (["--cutoffs", "40"], "--cutoffs belongs to --softmax adaptive"),
    (["--softmax", "adaptive", "--tie-embeddings"], "--tie-embeddings needs --softmax full"),
    (["--level", "char", "--sparse-embedding"], "--sparse-embedding is for word-level"),
])
def test_bad_word_level_options(tmp_path, corpus, capsys, extra, why):
    code, out = _train(tmp_path, corpus, *extra)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert why in err and "\n" not in err and "Traceback" not in err
    assert not (out / "model.safetensors").exists()
