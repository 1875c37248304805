"""``rnnkit classify | tag | seq2seq train | predict`` end to end on tiny files: output order
and format, model directories that rebuild themselves, and one-line errors (exit 2, no
traceback, nothing written) for users' mistakes."""

import io
import random
import sys

import pytest

from rnnkit.cli import main

FAST = ["--steps", "150", "--hidden", "16", "--embed", "8", "--batch", "16", "--lr", "0.02",
        "--quiet"]


def run(argv, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    r = random.Random(0)
    cls, tag, s2s = [], [], []
    for _ in range(120):
        w = "".join(r.choice("ab") for _ in range(r.randint(1, 5)))
        cls.append(f"{w}\t{'A' if w[0] == 'a' else 'B'}")
        toks = [r.choice(["the", "a", "cat", "dog", "runs"]) for _ in range(r.randint(1, 4))]
        tags = ["D" if t in ("the", "a") else "V" if t == "runs" else "N" for t in toks]
        tag.append(" ".join(toks) + "\t" + " ".join(tags))
        s2s.append(f"{w}\t{' '.join(w.upper())}")
    for name, lines in [("cls", cls), ("tag", tag), ("s2s", s2s)]:
        (d / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    assert main(["classify", "train", str(data / "cls.tsv"), "--out", str(out / "cls"),
                 "--val", str(data / "cls.tsv"), "--bidirectional", *FAST]) == 0
    assert main(["tag", "train", str(data / "tag.tsv"), "--out", str(out / "tag"),
                 "--bidirectional", "--cell", "gru", *FAST]) == 0
    assert main(["seq2seq", "train", str(data / "s2s.tsv"), "--out", str(out / "s2s"),
                 "--target-level", "word", "--cell", "gru", "--bidirectional", *FAST[:1], "300",
                 "--hidden", "32", *FAST[4:]]) == 0
    return out


def test_classify_predict_prints_input_tab_label_in_order(models, tmp_path, capsys):
    inputs = ["abba", "b", "", "aaaa", "ba", "a\tignored label"]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(inputs) + "\n", encoding="utf-8")
    code, out, err = run(["classify", "predict", str(models / "cls"), str(f)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["abba", "b", "", "aaaa", "ba", "a"]
    assert [ln.split("\t")[1] for ln in lines] == ["A", "B", "", "A", "B", "A"]
    assert all(ln.count("\t") == 1 for ln in lines)


def test_tag_predict_from_stdin(models, capsys, monkeypatch):
    code, out, err = run(["tag", "predict", str(models / "tag")], capsys,
                         stdin="the cat runs\ndog\na dog runs the cat\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert out == "the cat runs\tD N V\ndog\tN\na dog runs the cat\tD N V D N\n"


def test_seq2seq_predict_greedy_and_beam(models, tmp_path, capsys):
    f = tmp_path / "in.txt"
    words = ["ab", "bba", "a", "ba", "b"]
    f.write_text("\n".join(words), encoding="utf-8")
    results = {}
    for beam in ("1", "3"):
        code, out, err = run(["seq2seq", "predict", str(models / "s2s"), str(f), "--beam", beam],
                             capsys)
        assert code == 0, err
        results[beam] = out
        assert [ln.split("\t")[0] for ln in out.splitlines()] == words
    assert results["1"] == "".join(f"{w}\t{' '.join(w.upper())}\n" for w in words)
    assert results["3"] == results["1"]


def test_predict_output_order_survives_length_sorting(models, tmp_path, capsys):
    """predict batches inputs by length; the output must still follow the input order."""
    words = ["a" * (1 + (7 * i) % 5) + "b" * (i % 3) for i in range(40)]
    f = tmp_path / "many.txt"
    f.write_text("\n".join(words) + "\n", encoding="utf-8")
    code, out, _ = run(["classify", "predict", str(models / "cls"), str(f), "--batch", "7"], capsys)
    assert code == 0
    assert [ln.split("\t")[0] for ln in out.splitlines()] == words


def test_model_dir_holds_config_vocab_and_labels(models):
    from rnnkit.checkpoint import load_checkpoint

    arrays, meta = load_checkpoint(models / "cls" / "model.safetensors")
    assert meta["kind"] == "rnnkit.classify"
    assert meta["labels"] == ["A", "B"]
    assert meta["config"]["bidirectional"] is True
    assert meta["info"]["val_accuracy"] >= 0.95
    assert "rnn.weight_ih_l0_reverse" in arrays
    assert (models / "cls" / "metrics.jsonl").exists()
    state, smeta = load_checkpoint(models / "cls" / "checkpoint.safetensors")
    assert smeta["step"] == 150 and smeta["run"]["task"] == "classify"
    assert all(k.startswith(("param/", "opt/", "best/", "order/")) for k in state)


# ---- users' mistakes: one line, exit 2, nothing written -------------------------------------
def _bad(tmp_path, text):
    f = tmp_path / "bad.tsv"
    f.write_text(text, encoding="utf-8")
    return f


@pytest.mark.parametrize("task,text,message", [
    ("classify", "ab\tA\nab A\nb\tB\n", "line 2: expected two fields"),
    ("classify", "ab\tA\n\nb\tB\tC\n", "line 3: expected two fields"),
    ("classify", "ab\t\n", "line 1: empty label"),
    ("tag", "the cat\tD N\na dog runs\tD N\n", "line 2: 3 token(s) but 2 tag(s)"),
    ("seq2seq", "ab\tAB\n\tX\n", "line 2: empty input"),
    ("seq2seq", "ab\t\n", "line 1: empty target"),
])
def test_malformed_lines_name_their_line(task, text, message, tmp_path, capsys):
    out = tmp_path / "model"
    code, _, err = run([task, "train", str(_bad(tmp_path, text)), "--out", str(out)], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("extra,message", [
    (["--cell", "transformer"], "unknown cell 'transformer'"),
    (["--hidden", "0"], "--hidden must be a positive integer"),
    (["--layers", "-1"], "--layers must be a positive integer"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--batch", "0"], "--batch must be a positive integer"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--val", "/nonexistent/val.tsv"], "no such file"),
    (["--clip", "inf"], "--clip must be >= 0"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive integer"),
    (["--on-nonfinite", "ignore"], "--on-nonfinite must be stop or skip, got 'ignore'"),
    (["--resume"], "--resume: no checkpoint.safetensors in"),
])
def test_bad_options_are_one_line_errors(extra, message, data, tmp_path, capsys):
    out = tmp_path / "model"
    code, _, err = run(["classify", "train", str(data / "cls.tsv"), "--out", str(out), *extra],
                       capsys)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_data_file_and_bad_levels(tmp_path, capsys, data):
    code, _, err = run(["tag", "train", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "m")],
                       capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run(["seq2seq", "train", str(data / "s2s.tsv"), "--out", str(tmp_path / "m"),
                        "--source-level", "byte"], capsys)
    assert code == 2 and "--source-level must be 'char' or 'word'" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("task", ["classify", "tag", "seq2seq"])
def test_task_without_action_is_one_line_on_stderr(task, capsys):
    code, out, err = run([task], capsys)
    assert code == 2 and out == ""
    assert err == f"rnnkit {task}: error: choose an action: train or predict\n"


def test_existing_model_needs_force(models, data, capsys):
    before = (models / "tag" / "model.safetensors").read_bytes()
    code, _, err = run(["tag", "train", str(data / "tag.tsv"), "--out", str(models / "tag")], capsys)
    assert code == 2 and "already holds a model: --resume continues it, --force starts over" in err
    assert (models / "tag" / "model.safetensors").read_bytes() == before


def test_unknown_validation_label_names_the_line(data, tmp_path, capsys):
    val = _bad(tmp_path, "ab\tA\nba\tZ\n")
    code, _, err = run(["classify", "train", str(data / "cls.tsv"), "--out", str(tmp_path / "m"),
                        "--val", str(val), "--quiet"], capsys)
    assert code == 2 and "line 2: label 'Z' does not occur in the training data" in err


def test_predict_refuses_missing_or_foreign_model_dirs(models, tmp_path, capsys):
    code, _, err = run(["tag", "predict", str(tmp_path / "none")], capsys)
    assert code == 2 and "no such model directory" in err
    code, _, err = run(["tag", "predict", str(models / "cls")], capsys)
    assert code == 2 and "not a tag model" in err
    code, _, err = run(["seq2seq", "predict", str(models / "s2s"), "--beam", "0"], capsys)
    assert code == 2 and "--beam must be a positive integer" in err
    code, out, err = run(["seq2seq", "predict", str(models / "s2s"), "--beam", "2",
                          "--length-penalty", "nan"], capsys)
    assert code == 2 and out == "" and "--length-penalty must be a finite number" in err
