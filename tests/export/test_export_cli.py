"""``rnnkit export DIR OUT --format onnx|torch``: model directories as the trainers write them
(through the project's own savers), the written files run outside rnnkit, and bad input is
one line, exit 2, with nothing half-written."""

import json

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data.vocab import Vocab
from rnnkit.lm.bundle import save_model
from rnnkit.models import (ClassifierConfig, Seq2Seq, Seq2SeqConfig, SequenceClassifier,
                           SequenceTagger, TaggerConfig)
from rnnkit.models.language_model import LanguageModel, LMConfig


def save_task(out_dir, task, model, meta):
    from rnnkit.tasks.bundle import save_bundle

    out_dir.mkdir(parents=True, exist_ok=True)
    save_bundle(out_dir, task, model, meta)


VOCAB = Vocab(["<pad>", "<unk>", "<eos>"] + list("abcdefg"))


@pytest.fixture
def lm_dir(tmp_path):
    model = LanguageModel(LMConfig(vocab_size=len(VOCAB), cell="gru", num_layers=2,
                                   hidden_size=6, embed_dim=4), seed=0)
    d = tmp_path / "lm"
    d.mkdir()
    save_model(d / "model.safetensors", model, VOCAB, "char")
    return d, model


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def listing(path):
    return sorted(p.name for p in path.iterdir())


def test_language_model_to_onnx_runs_in_onnx_runtime(lm_dir, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    d, model = lm_dir
    out = tmp_path / "lm_onnx"
    code, stdout, err = run(["export", d, out, "--format", "onnx"], capsys)
    assert code == 0, err
    assert listing(out) == ["model.onnx"]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    assert json.loads(props["rnnkit.vocab"]) == VOCAB.tokens
    assert props["rnnkit.level"] == "char" and props["rnnkit.kind"] == "language_model"
    ids = np.array([[2, 3, 4, 5], [2, 6, 0, 0]])
    lp, h_n = sess.run(None, {"ids": ids, "lengths": np.array([4, 2]),
                              "h0": np.zeros((2, 2, 6), np.float32)})
    for i, n in enumerate([4, 2]):
        want, _ = model.log_probs(ids[i:i + 1, :n])
        np.testing.assert_allclose(lp[i, :n], want[0], atol=1e-5, rtol=0)


def test_classifier_to_torch(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import importlib.util

    model = SequenceClassifier(ClassifierConfig(len(VOCAB), 2, embed_dim=4, hidden_size=5,
                                                cell="lstm", bidirectional=True,
                                                pooling="mean"))
    d = tmp_path / "clf"
    save_task(d, "classify", model, {"vocab": VOCAB.to_json(), "labels": ["neg", "pos"],
                                     "level": "char"})
    out = tmp_path / "clf_torch"
    code, _, err = run(["export", d, out, "--format", "torch"], capsys)
    assert code == 0, err
    assert listing(out) == ["model.py", "model.safetensors"]
    spec = importlib.util.spec_from_file_location("clf_export", out / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.load()
    ids, lengths = np.array([[3, 4, 5], [6, 7, 0]]), np.array([3, 2])
    with torch.no_grad():
        got = net(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()
    logits = model.forward(ids, lengths)[0]
    want = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_seq2seq_and_tagger_to_onnx_write_their_files(tmp_path, capsys):
    pytest.importorskip("onnx")
    import onnx

    s2s = Seq2Seq(Seq2SeqConfig(len(VOCAB), len(VOCAB), embed_dim=4, hidden_size=5,
                                cell="rnn", bidirectional=True))
    d = tmp_path / "s2s"
    save_task(d, "seq2seq", s2s, {"src_vocab": VOCAB.to_json(), "tgt_vocab": VOCAB.to_json(),
                                  "source_level": "char", "target_level": "char"})
    code, _, err = run(["export", d, tmp_path / "s2s_onnx"], capsys)
    assert code == 0, err
    assert listing(tmp_path / "s2s_onnx") == ["decoder.onnx", "encoder.onnx"]
    tagger = SequenceTagger(TaggerConfig(len(VOCAB), 3, embed_dim=4, hidden_size=5, cell="gru"))
    d = tmp_path / "tag"
    save_task(d, "tag", tagger, {"vocab": VOCAB.to_json(), "labels": ["A", "B", "C"]})
    code, _, err = run(["export", d, tmp_path / "tag_onnx", "--format", "onnx"], capsys)
    assert code == 0, err
    m = onnx.load(str(tmp_path / "tag_onnx" / "model.onnx"))
    props = {p.key: p.value for p in m.metadata_props}
    assert json.loads(props["rnnkit.tags"]) == ["A", "B", "C"]
    assert props["rnnkit.kind"] == "tagger"


# ---- bad input: one line, exit 2, nothing written ---------------------------------------
def one_line_error(code, err, *words):
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_directory_without_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["export", tmp_path / "empty", tmp_path / "out"], capsys)
    one_line_error(code, err, "model.safetensors")
    assert not (tmp_path / "out").exists()
    code, _, err = run(["export", tmp_path / "missing", tmp_path / "out"], capsys)
    one_line_error(code, err, "missing")
    assert not (tmp_path / "out").exists()


def test_unknown_format(lm_dir, tmp_path, capsys):
    code, _, err = run(["export", lm_dir[0], tmp_path / "out", "--format", "tflite"], capsys)
    one_line_error(code, err, "tflite", "onnx, torch")
    assert not (tmp_path / "out").exists()


def test_existing_out_needs_force(lm_dir, tmp_path, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run(["export", lm_dir[0], out], capsys)
    one_line_error(code, err, "--force")
    assert listing(out) == ["notes.txt"]
    # --force replaces the export in it (a seq2seq export's files would go); other files stay
    (out / "encoder.onnx").write_bytes(b"old")
    code, _, err = run(["export", lm_dir[0], out, "--force"], capsys)
    assert code == 0, err
    assert listing(out) == ["model.onnx", "notes.txt"]
    afile = tmp_path / "a_file"
    afile.write_text("x")
    code, _, err = run(["export", lm_dir[0], afile, "--force"], capsys)
    one_line_error(code, err, "not a directory")
    assert afile.read_text() == "x"


def test_kind_the_exporter_does_not_know(tmp_path, capsys):
    from rnnkit.checkpoint import save_checkpoint

    d = tmp_path / "odd"
    d.mkdir()
    save_checkpoint(d / "model.safetensors", {"w": np.zeros(2, np.float32)},
                    {"kind": "rnnkit.translate-images"})
    code, _, err = run(["export", d, tmp_path / "out"], capsys)
    one_line_error(code, err, "does not know")
    assert not (tmp_path / "out").exists()


def test_model_the_format_cannot_express():
    from rnnkit.export import export_files
    from rnnkit.export._meta import CannotExpress
    from rnnkit.models import FeedForward, FeedForwardConfig

    with pytest.raises(CannotExpress, match="not FeedForward"):
        export_files(FeedForward(FeedForwardConfig(3, 2)), "onnx")
    model = SequenceTagger(TaggerConfig(len(VOCAB), 3, embed_dim=4, hidden_size=5,
                                        bidirectional=True))
    model.rnn.merge_mode = "sum"  # torch.nn only concatenates directions
    with pytest.raises(CannotExpress, match="the torch format cannot express merge_mode='sum'"):
        export_files(model, "torch")


def test_failure_while_writing_leaves_nothing(lm_dir, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx")
    import os

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    code, _, err = run(["export", lm_dir[0], tmp_path / "out"], capsys)
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert listing(tmp_path) == ["lm"]  # no OUT, no temporary folder


def test_missing_onnx_names_the_extra(lm_dir, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    code, _, err = run(["export", lm_dir[0], tmp_path / "out"], capsys)
    one_line_error(code, err, "pip install 'rnnkit[onnx]'")
    assert not (tmp_path / "out").exists()


def test_example_samples_with_onnx_runtime_alone(lm_dir, tmp_path, capsys):
    """examples/onnx_sample.py: an exported model sampled without importing rnnkit."""
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "lm_onnx"
    assert run(["export", lm_dir[0], out], capsys)[0] == 0
    script = Path(__file__).resolve().parents[2] / "examples" / "onnx_sample.py"
    assert "rnnkit" not in "".join(line for line in script.read_text().splitlines(True)
                                   if "import" in line)
    res = subprocess.run([sys.executable, str(script), str(out / "model.onnx"), "40"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = res.stdout[:-1]  # print's newline
    assert text.strip() and set(text) <= set("".join(VOCAB.tokens) + "\n")


def test_float64_model_and_dtype_option(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    model = LanguageModel(LMConfig(vocab_size=len(VOCAB), cell="lstm", num_layers=1,
                                   hidden_size=6, embed_dim=4, dtype="float64"), seed=0)
    d = tmp_path / "lm64"
    d.mkdir()
    save_model(d / "model.safetensors", model, VOCAB, "char")
    code, _, err = run(["export", d, tmp_path / "as64"], capsys)
    assert code == 0 and "--dtype float32" in err  # the note: ONNX Runtime runs float32 only
    m = onnx.load(str(tmp_path / "as64" / "model.onnx"))
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    code, _, err = run(["export", d, tmp_path / "as32", "--dtype", "float32"], capsys)
    assert code == 0 and err == ""
    sess = ort.InferenceSession(str(tmp_path / "as32" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    ids = np.array([[2, 5, 6]])
    z = np.zeros((1, 1, 6), np.float32)
    lp = sess.run(None, {"ids": ids, "lengths": np.array([3]), "h0": z, "c0": z})[0]
    np.testing.assert_allclose(lp[0], model.log_probs(ids)[0][0], atol=1e-5, rtol=0)
    code, _, err = run(["export", d, tmp_path / "bad", "--dtype", "float16"], capsys)
    one_line_error(code, err, "float16")
    code, _, err = run(["export", d, tmp_path / "bad", "--format", "torch", "--dtype",
                        "float32"], capsys)
    one_line_error(code, err, "onnx format only")
    assert not (tmp_path / "bad").exists()


def test_onnx_export_is_run_against_rnnkit_before_writing(tmp_path):
    """Every kind: the check ran (a measured difference, within float32 rounding)."""
    pytest.importorskip("onnxruntime")
    from rnnkit.export import export
    from rnnkit.models import ConditionalGenerator, GeneratorConfig

    models = [LanguageModel(LMConfig(vocab_size=9, cell="rnn", num_layers=2, hidden_size=4,
                                     embed_dim=3), seed=1),
              SequenceClassifier(ClassifierConfig(9, 3, embed_dim=3, hidden_size=4,
                                                  bidirectional=True, pooling="max")),
              SequenceTagger(TaggerConfig(9, 3, embed_dim=3, hidden_size=4, cell="gru")),
              Seq2Seq(Seq2SeqConfig(9, 6, embed_dim=3, hidden_size=4, bidirectional=True)),
              ConditionalGenerator(GeneratorConfig(6, num_classes=2, embed_dim=3,
                                                   hidden_size=4))]
    for i, model in enumerate(models):
        written = export(model, tmp_path / f"m{i}", "onnx")
        assert written.checked is not None and written.checked < 1e-5, type(model).__name__
    assert export(models[0], tmp_path / "unchecked", "onnx", check=False).checked is None


def test_a_graph_that_disagrees_is_not_written(lm_dir, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    from rnnkit.export import _onnx_graph

    # a wrong GRU gate order (r and z kept in PyTorch's order) still passes onnx.checker
    monkeypatch.setitem(_onnx_graph._GATE_ORDER, "gru", (0, 1, 2))
    code, _, err = run(["export", lm_dir[0], tmp_path / "out"], capsys)
    assert code == 1 and err.count("\n") == 1 and "differ from rnnkit" in err, err
    assert listing(tmp_path) == ["lm"]
    code, _, err = run(["export", lm_dir[0], tmp_path / "out", "--no-check"], capsys)
    assert code == 0  # the user may skip the check, and gets what they asked for


def test_a_convolutional_classifier_is_refused_not_misread():
    import dataclasses

    from rnnkit.export import export_files
    from rnnkit.export._meta import CannotExpress
    from rnnkit.models.conv_classifier import ConvClassifier, ConvClassifierConfig

    required = {f.name: 3 for f in dataclasses.fields(ConvClassifierConfig)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    model = ConvClassifier(ConvClassifierConfig(**required))
    assert model.kind == "classifier"  # what it calls itself; the export knows better
    with pytest.raises(CannotExpress, match="not ConvClassifier"):
        export_files(model, "onnx")


def test_a_model_over_protobufs_limit_is_refused(monkeypatch):
    pytest.importorskip("onnx")
    import rnnkit.export as ex
    from rnnkit.export._meta import CannotExpress

    model = LanguageModel(LMConfig(vocab_size=9, cell="gru", num_layers=1, hidden_size=4,
                                   embed_dim=3), seed=0)
    size = sum(p.size for p in model.params.values()) * 4
    monkeypatch.setattr(ex, "ONNX_LIMIT", size)  # this model is "2 GiB" now
    with pytest.raises(CannotExpress, match="2 GiB"):
        ex.export_files(model, "onnx")
    assert ex.export_files(model, "torch")  # safetensors has no such limit
