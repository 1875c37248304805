"""``rnnkit classify train --model conv``: the convolutional classifier through the same
command, training loop, model file format and ``predict`` as the recurrent one."""

import numpy as np
import pytest

from rnnkit.cli import main

WORDS = {"en": ["the", "cat", "with", "this", "thing", "that", "there", "other", "three"],
         "de": ["der", "und", "nicht", "schon", "ich", "sch", "zwei", "nacht", "licht"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("convcli")
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(120):
        lang = "en" if rng.random() < 0.5 else "de"
        lines.append(f"{WORDS[lang][rng.integers(len(WORDS[lang]))]}\t{lang}")
    (d / "train.tsv").write_text("\n".join(lines) + "\n")
    (d / "inputs.txt").write_text("the\nnicht\nlicht\nthere\n")
    return d


def test_train_and_predict(data, capsys):
    from rnnkit.models.conv_classifier import ConvClassifier
    from rnnkit.tasks import load_bundle

    out = data / "conv"
    rc = main(["classify", "train", str(data / "train.tsv"), "--out", str(out), "--model", "conv",
               "--kernel", "3", "--layers", "2", "--hidden", "16", "--embed", "8", "--steps", "80",
               "--batch", "16", "--lr", "0.01", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    model, meta = load_bundle(out, "classify")
    assert isinstance(model, ConvClassifier)
    assert meta["config"]["architecture"] == "conv" and meta["config"]["kernel_size"] == 3
    # --pooling's default (last) means max for a convolution: it has no last state.
    assert meta["config"]["num_layers"] == 2 and meta["config"]["pooling"] == "max"
    capsys.readouterr()
    assert main(["classify", "predict", str(out), str(data / "inputs.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    words = ["the", "nicht", "licht", "there"]
    assert [line.split("\t")[0] for line in lines] == words
    vocab = meta["vocab"]
    for w, line in zip(words, lines):
        p = model.predict(vocab.encode(list(w))[None])[0]
        assert line.split("\t")[1] == meta["labels"][int(p)]
    # It learnt the toy task (training words): far above chance.
    assert sum(line.split("\t")[1] == ("en" if w in WORDS["en"] else "de")
               for w, line in zip(words, lines)) >= 3


@pytest.mark.parametrize("argv, needle", [
    (["--model", "conv", "--kernel", "0"], "--kernel"),
    (["--model", "transformer"], "--model"),
])
def test_bad_options_one_line_exit_2(data, capsys, argv, needle):
    capsys.readouterr()
    rc = main(["classify", "train", str(data / "train.tsv"), "--out", str(data / "bad"), *argv,
               "--steps", "2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1
    assert not (data / "bad" / "model.safetensors").exists()


def test_conv_is_a_classify_option_only(data, capsys):
    (data / "tag.tsv").write_text("a b\tX Y\nb a\tY X\n")
    capsys.readouterr()
    assert main(["tag", "train", str(data / "tag.tsv"), "--out", str(data / "t"), "--model",
                 "conv"]) == 2
