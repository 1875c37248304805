"""rnnkit.tasks: the Task specs, TSV reading (header warning, single label), model bundles
(the bound on a loaded seq2seq's output length) and predictions in input order."""

import numpy as np
import pytest

from rnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnkit.cli import main
from rnnkit.data import Vocab
from rnnkit.models import Seq2Seq, Seq2SeqConfig
from rnnkit.tasks import (TASKS, get_task, load_bundle, predict_ids, predict_lines, read_tsv,
                          save_bundle)
from rnnkit.tasks.bundle import MAX_TARGET_LEN


def write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_one_spec_per_task_by_name():
    assert list(TASKS) == ["classify", "tag", "seq2seq"]
    assert get_task("tag") is TASKS["tag"] and get_task(TASKS["tag"]) is TASKS["tag"]
    with pytest.raises(ValueError, match="unknown task 'parse'"):
        get_task("parse")


def test_read_tsv_through_the_specs(tmp_path):
    p = write(tmp_path, "t.tsv", ["the cat\tD N", "", "a dog runs\tD N V"])
    assert read_tsv(p, "tag") == [(1, ["the", "cat"], ["D", "N"]),
                                  (3, ["a", "dog", "runs"], ["D", "N", "V"])]
    p = write(tmp_path, "s.tsv", ["ab\tA B", "ba\tB A"])
    assert read_tsv(p, "seq2seq", ("char", "word")) == [(1, ["a", "b"], ["A", "B"]),
                                                         (2, ["b", "a"], ["B", "A"])]
    bad = write(tmp_path, "b.tsv", ["the cat\tD"])
    with pytest.raises(ValueError, match=r"b.tsv: line 1: 2 token\(s\) but 1 tag\(s\)"):
        read_tsv(bad, "tag")


def test_a_header_line_gives_a_warning(tmp_path, capsys):
    rows = ["text\tlabel", "abba\tA", "baab\tB", "aa\tA", "bb\tB"]
    got = []
    examples = read_tsv(write(tmp_path, "h.tsv", rows), "classify", warn=got.append)
    assert len(examples) == 5  # still read: it may be a real example
    assert len(got) == 1 and "line 1 looks like a column header" in got[0]
    assert "'label'" in got[0]
    got.clear()
    read_tsv(write(tmp_path, "ok.tsv", rows[1:]), "classify", warn=got.append)
    read_tsv(write(tmp_path, "tag.tsv", ["the cat\tD N", "a dog\tD N", "cat\tN"]), "tag",
             warn=got.append)
    assert got == []
    read_tsv(write(tmp_path, "th.tsv", ["words\ttags", "the cat\tD N", "a dog\tD N"]), "tag",
             warn=got.append)
    assert len(got) == 1 and "its tags occur nowhere else" in got[0]
    # Through the command: one warning line on stderr, and training goes on.
    out = tmp_path / "run"
    capsys.readouterr()
    code = main(["classify", "train", str(tmp_path / "h.tsv"), "--out", str(out),
                 "--steps", "2", "--hidden", "4", "--embed", "3", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning:" in err and "looks like a column header" in err


def test_a_classifier_needs_two_labels(tmp_path, capsys):
    p = write(tmp_path, "one.tsv", ["abba\tA", "baab\tA", "aa\tA"])
    with pytest.raises(ValueError, match="every example has the label 'A'"):
        TASKS["classify"].describe(read_tsv(p, "classify"), ("char", "word"), p)
    capsys.readouterr()
    code = main(["classify", "train", str(p), "--out", str(tmp_path / "run"), "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "a classifier needs at least two labels" in err
    assert not (tmp_path / "run").exists()


def _seq2seq_bundle(tmp_path, **config):
    src, tgt = Vocab.build("abc"), Vocab.build("ABC")
    model = Seq2Seq(Seq2SeqConfig(len(src), len(tgt), embed_dim=4, hidden_size=5, **config))
    meta = {"src_vocab": src.to_json(), "tgt_vocab": tgt.to_json(), "source_level": "char",
            "target_level": "char"}
    d = tmp_path / "s2s"
    d.mkdir()
    save_bundle(d, "seq2seq", model, meta)
    return d, model


def test_bundle_round_trip_and_predictions_in_input_order(tmp_path):
    d, model = _seq2seq_bundle(tmp_path, max_target_len=7)
    loaded, meta = load_bundle(d, "seq2seq")
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    xs = [np.array([3, 4, 5]), np.array([4]), np.array([5, 3])]
    preds = predict_ids(loaded, "seq2seq", xs, batch=2)
    assert preds == [model.greedy(x[None, :])[0] for x in xs]
    lines = predict_lines(loaded, "seq2seq", meta, ["abc", "", "b"], beam=2,
                          length_penalty=0.5, max_len=4)
    src = meta["src_vocab"]
    expect = [model.beam_search(src.encode(list(w))[None, :], None, 2, max_len=4,
                                length_penalty=0.5)[0] for w in ("abc", "b")]
    assert lines[1] == ""
    assert [lines[0], lines[2]] == ["".join(meta["tgt_vocab"].decode(np.array(e, dtype=np.int64)))
                                    for e in expect]


def test_a_loaded_seq2seq_cannot_ask_for_unbounded_decoding(tmp_path):
    d, _ = _seq2seq_bundle(tmp_path)
    arrays, meta = load_checkpoint(d / "model.safetensors")
    meta["config"]["max_target_len"] = 10 ** 12
    save_checkpoint(d / "model.safetensors", arrays, meta)
    with pytest.raises(CheckpointError, match=f"max_target_len {10 ** 12} is over the limit "
                                              f"{MAX_TARGET_LEN}"):
        load_bundle(d, "seq2seq")
