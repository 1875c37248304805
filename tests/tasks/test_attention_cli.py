"""``rnnkit seq2seq train --attention``, ``predict --alignments/--plot`` end to end on a tiny
task, and the users' mistakes around them: one line, exit 2, nothing written."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.tasks import load_bundle

OLD = Path(__file__).resolve().parents[1] / "data" / "seq2seq_noattn" / "model_bilstm"
FAST = ["--steps", "150", "--hidden", "16", "--embed", "8", "--batch", "16", "--lr", "0.02",
        "--quiet", "--bidirectional", "--target-level", "word"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    r = random.Random(0)
    lines = []
    for _ in range(120):
        w = "".join(r.choice("abcd") for _ in range(r.randint(1, 5)))
        lines.append(f"{w}\t{' '.join(reversed(w.upper()))}")
    (d / "s2s.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / "in.txt").write_text("abc\n\nd\ncab\nabcd\n", encoding="utf-8")
    (d / "cls.tsv").write_text("ab\tA\nba\tB\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    assert main(["seq2seq", "train", str(data / "s2s.tsv"), "--out", str(out / "default"),
                 *FAST]) == 0
    assert main(["seq2seq", "train", str(data / "s2s.tsv"), "--out", str(out / "general"),
                 "--attention", "general", "--cell", "gru", *FAST]) == 0
    return out


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_new_models_attend_by_default(models):
    m, _ = load_bundle(models / "default", "seq2seq")
    assert m.config.attention == "additive"
    g, _ = load_bundle(models / "general", "seq2seq")
    assert g.config.attention == "general"


@pytest.mark.parametrize("name", ["default", "general"])
def test_alignments_json_and_plot(models, data, tmp_path, capsys, name):
    js, png = tmp_path / "a.json", tmp_path / "a.png"
    code, out, err = run(["seq2seq", "predict", str(models / name), str(data / "in.txt"),
                          "--beam", "3", "--alignments", str(js), "--plot", str(png),
                          "--plot-count", "2"], capsys)
    assert code == 0, err
    code2, plain, _ = run(["seq2seq", "predict", str(models / name), str(data / "in.txt"),
                           "--beam", "3"], capsys)
    assert out == plain  # the same predictions with or without the extra files
    recs = json.loads(js.read_text(encoding="utf-8"))["alignments"]
    preds = [line.split("\t")[1] for line in out.splitlines()]
    assert [r["input"] for r in recs] == ["abc", "d", "cab", "abcd"]  # the blank line has none
    for r, p in zip(recs, [preds[0], preds[2], preds[3], preds[4]]):
        assert r["source"] == list(r["input"])
        assert r["output"] == p.split() + ["</s>"]
        w = np.array(r["weights"])
        assert w.shape == (len(r["output"]), len(r["source"]))
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    head = png.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 100 and img.shape[1] > 200  # two panels side by side
    assert not list(tmp_path.glob(".*tmp*"))


def test_existing_output_needs_force(models, data, tmp_path, capsys):
    js = tmp_path / "a.json"
    js.write_text("mine", encoding="utf-8")
    code, out, err = run(["seq2seq", "predict", str(models / "default"), str(data / "in.txt"),
                          "--alignments", str(js)], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--force" in err
    assert js.read_text(encoding="utf-8") == "mine"
    code, _, err = run(["seq2seq", "predict", str(models / "default"), str(data / "in.txt"),
                        "--alignments", str(js), "--force"], capsys)
    assert code == 0, err
    assert "alignments" in json.loads(js.read_text(encoding="utf-8"))


@pytest.mark.parametrize("argv,needle", [
    (["classify", "train", "{cls}", "--out", "{out}", "--attention", "additive"],
     "no decoder"),
    (["tag", "train", "{cls}", "--out", "{out}", "--attention", "general"], "no decoder"),
    (["seq2seq", "train", "{s2s}", "--out", "{out}", "--attention", "dot"], "--attention"),
    (["seq2seq", "predict", str(OLD), "{inp}", "--alignments", "{out}/a.json"],
     "no attention"),
    (["seq2seq", "predict", str(OLD), "{inp}", "--plot", "{out}/a.png"], "no attention"),
    (["seq2seq", "predict", "{model}", "{inp}", "--plot", "{out}/a.png", "--plot-count", "0"],
     "--plot-count"),
])
def test_mistakes_are_one_line_exit_2(models, data, tmp_path, capsys, argv, needle):
    fill = {"cls": str(data / "cls.tsv"), "s2s": str(data / "s2s.tsv"), "out": str(tmp_path / "o"),
            "inp": str(data / "in.txt"), "model": str(models / "default")}
    (tmp_path / "o").mkdir()
    code, out, err = run([a.format(**fill) for a in argv], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in err
    assert list((tmp_path / "o").iterdir()) == []  # nothing written


def test_plot_of_blank_inputs_is_refused_and_writes_nothing(models, tmp_path, capsys):
    blank = tmp_path / "blank.txt"
    blank.write_text("\tignored\n\n", encoding="utf-8")  # an empty input before the TAB
    js, png = tmp_path / "a.json", tmp_path / "a.png"
    code, out, err = run(["seq2seq", "predict", str(models / "default"), str(blank),
                          "--alignments", str(js), "--plot", str(png)], capsys)
    assert code == 2 and "nothing to plot" in err and len(err.strip().splitlines()) == 1
    assert not js.exists() and not png.exists()


def test_ensemble_predicts_with_the_mean_of_the_models(models, data, capsys):
    from rnnkit.data.batching import pad_sequences
    from rnnkit.models.ensemble import Seq2SeqEnsemble

    code, out, err = run(["seq2seq", "predict", str(models / "default"), str(data / "in.txt"),
                          "--beam", "3", "--ensemble", str(models / "general")], capsys)
    assert code == 0, err
    a, meta = load_bundle(models / "default", "seq2seq")
    b, _ = load_bundle(models / "general", "seq2seq")
    words = ["abc", "d", "cab", "abcd"]
    src, sl = pad_sequences([meta["src_vocab"].encode(list(w)) for w in words])
    expect = [" ".join(meta["tgt_vocab"].decode(np.array(h, dtype=np.int64)))
              for h in Seq2SeqEnsemble([a, b]).beam_search(src, sl, 3)]
    got = [line.split("\t")[1] for line in out.splitlines()]
    assert got == [expect[0], "", *expect[1:]]
    # a model in an ensemble with itself predicts as alone
    code, twice, _ = run(["seq2seq", "predict", str(models / "general"), str(data / "in.txt"),
                          "--ensemble", str(models / "general")], capsys)
    code2, alone, _ = run(["seq2seq", "predict", str(models / "general"), str(data / "in.txt")],
                          capsys)
    assert code == code2 == 0 and twice == alone


@pytest.mark.parametrize("extra,needle", [
    (["--ensemble", str(OLD)], "differs"),
    (["--ensemble", "{model}", "--alignments", "{out}/a.json"], "--ensemble"),
    (["--ensemble", "{out}/nothing"], "no such model"),
])
def test_ensemble_mistakes_are_one_line_exit_2(models, data, tmp_path, capsys, extra, needle):
    fill = {"out": str(tmp_path / "o"), "model": str(models / "general")}
    (tmp_path / "o").mkdir()
    code, out, err = run(["seq2seq", "predict", str(models / "default"), str(data / "in.txt"),
                          *[a.format(**fill) for a in extra]], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err and "Traceback" not in err
    assert list((tmp_path / "o").iterdir()) == []
