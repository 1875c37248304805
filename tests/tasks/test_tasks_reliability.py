"""Reliability of the sequence tasks (``rnnkit classify | tag | seq2seq``), held to what the
language-model side already does (tests/test_reliability*.py):

- model files: a forged config is refused by its array shapes before anything is allocated;
  NaN/Inf weights and descriptions that do not fit the config are one-line errors;
- training: NaN/Inf stops with one line naming the step (exit 1, last good checkpoint kept)
  or is skipped and counted; an update that makes the weights non-finite always stops;
- ``DIR/checkpoint.safetensors``: written every ``--checkpoint-every`` steps, at the end and
  on Ctrl-C (exit 130); ``--resume`` ends bit-identical to a run never interrupted, and
  refuses other options, other data and forged states with one line;
- small things: ``--length-penalty nan``, a task command without an action, and a dropout
  given as a string.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from rnnkit import _checks
from rnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnkit.cli import main
from rnnkit.cli_tasks import load_bundle
from rnnkit.models import (ClassifierConfig, FeedForward, FeedForwardConfig, Seq2Seq,
                           Seq2SeqConfig, SequenceClassifier, SequenceTagger, TaggerConfig)
from rnnkit.optim import Adam
from rnnkit.training import (BatchOrder, TrainingError, fit, load_training_state)

TASKS = ("classify", "tag", "seq2seq")
MODEL_CLASS = {"classify": SequenceClassifier, "tag": SequenceTagger, "seq2seq": Seq2Seq}
# Tiny, but with everything that must survive a resume: dropout (the shared RNG), bucketed
# minibatches over several epochs, held-out evaluation keeping the best weights.
RUN = ["--hidden", "8", "--embed", "4", "--batch", "8", "--steps", "30", "--lr", "0.02",
       "--dropout", "0.2", "--bidirectional", "--checkpoint-every", "4", "--eval-every", "6",
       "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    r = random.Random(0)
    lines = {"classify": [], "tag": [], "seq2seq": []}
    for _ in range(44):
        w = "".join(r.choice("abc") for _ in range(r.randint(1, 6)))
        lines["classify"].append(f"{w}\t{'A' if w[0] == 'a' else 'B'}")
        toks = [r.choice(["the", "a", "cat", "dog", "runs"]) for _ in range(r.randint(1, 5))]
        tags = ["D" if t in ("the", "a") else "V" if t == "runs" else "N" for t in toks]
        lines["tag"].append(" ".join(toks) + "\t" + " ".join(tags))
        lines["seq2seq"].append(f"{w}\t{w[::-1].upper()}")
    paths = {}
    for task, ls in lines.items():
        paths[task] = d / f"{task}.tsv"
        paths[task].write_text("\n".join(ls[:36]) + "\n", encoding="utf-8")
        paths[task + "_val"] = d / f"{task}_val.tsv"
        paths[task + "_val"].write_text("\n".join(ls[36:]) + "\n", encoding="utf-8")
    return paths


def train_argv(task, data, out, *extra):
    return [task, "train", str(data[task]), "--val", str(data[task + "_val"]), "--out",
            str(out), *RUN, *extra]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """One uninterrupted run of each task."""
    base = tmp_path_factory.mktemp("reference")
    for task in TASKS:
        assert main(train_argv(task, data, base / task)) == 0
    return base


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _forge(src: Path, dst_dir: Path, edit_arrays=None, edit_meta=None) -> Path:
    """A copy of a model file with edited content and a *valid* checksum (no signature)."""
    arrays, meta = load_checkpoint(src)
    if edit_arrays:
        edit_arrays(arrays)
    if edit_meta:
        edit_meta(meta)
    dst_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst_dir / "model.safetensors", arrays, meta)
    return dst_dir


# --------------------------------------------------------------------------- model files

@pytest.mark.parametrize("task", TASKS)
def test_forged_huge_config_is_refused_before_allocating(task, reference, tmp_path, capsys):
    """hidden_size 10**9 would ask for ~10**18 floats; the refusal comes from shapes alone."""
    d = _forge(reference / task / "model.safetensors", tmp_path / "huge",
               edit_meta=lambda m: m["config"].update(hidden_size=10**9, embed_dim=10**9))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="must have shape") as info:
            load_bundle(d, task)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value) and "model.safetensors" in str(info.value)
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"
    capsys.readouterr()
    assert main([task, "predict", str(d), str(reference.parent / "none")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "must have shape" in one_line(err)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights_are_refused(task, value, reference, data, tmp_path, capsys):
    def poison(arrays):
        name = sorted(arrays)[-1]
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] = value
    d = _forge(reference / task / "model.safetensors", tmp_path / "bad", edit_arrays=poison)
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        load_bundle(d, task)
    capsys.readouterr()
    assert main([task, "predict", str(d), str(data[task])]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no garbage predictions
    assert "weights hold NaN or Inf" in one_line(err) and "the model is unusable" in err


def _set(*keys, value):
    def edit(meta):
        for k in keys[:-1]:
            meta = meta[k]
        meta[keys[-1]] = value
    return edit


FORGED_DESCRIPTIONS = [
    ("classify", None, _set("labels", value=["A"]), "1 labels, the model predicts 2"),
    ("classify", None, _set("labels", value="AB"), "labels must be a list of strings"),
    ("classify", None, _set("labels", value=[1, 2]), "labels must be a list of strings"),
    ("classify", None, lambda m: m.pop("labels"), "bad model description"),
    ("classify", None, _set("level", value="byte"), "level must be 'char' or 'word'"),
    ("classify", None, _set("config", "vocab_size", value=3), "vocab has"),
    ("classify", None, _set("config", "dropout", value="0.5"), "dropout must be a number"),
    ("classify", None, _set("config", "cell", value="tcn"), "unknown cell"),
    ("classify", None, _set("config", "hidden_size", value=-1), "hidden_size must be a positive"),
    ("classify", None, _set("config", "shell", value="rm -rf /"), "unexpected keys"),
    ("classify", None, _set("config", value=[1, 2]), "expected a JSON object"),
    ("classify", lambda a: a.pop("out.bias"), None, "missing ['out.bias']"),
    ("classify", lambda a: a.__setitem__("extra", np.zeros(3, np.float32)), None, "unexpected"),
    ("classify", lambda a: a.__setitem__("out.bias", np.zeros(2, np.int64)), None,
     "must hold floats"),
    ("classify", lambda a: a.__setitem__("out.bias", np.zeros(3, np.float32)), None,
     "out.bias must have shape (2,)"),
    ("tag", None, _set("labels", value=["D", "N", "V", "X"]), "4 labels, the model predicts 3"),
    ("seq2seq", None, _set("target_level", value=None), "level must be 'char' or 'word'"),
    ("seq2seq", None, _set("tgt_vocab", value={"tokens": 3}), "bad model description"),
    ("seq2seq", None, _set("config", "tgt_vocab_size", value=99), "tgt_vocab has"),
    ("seq2seq", None, _set("config", "bidirectional", value=False), "missing"),
]


@pytest.mark.parametrize("task, edit_arrays, edit_meta, match", FORGED_DESCRIPTIONS)
def test_forged_model_description_is_one_clear_error(task, edit_arrays, edit_meta, match,
                                                     reference, data, tmp_path, capsys):
    d = _forge(reference / task / "model.safetensors", tmp_path / "forged", edit_arrays,
               edit_meta)
    with pytest.raises(CheckpointError) as info:
        load_bundle(d, task)
    assert match in str(info.value) and "\n" not in str(info.value)
    capsys.readouterr()
    assert main([task, "predict", str(d), str(data[task])]) == 2
    out, err = capsys.readouterr()
    assert out == "" and match in one_line(err)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_param_shapes_from_the_config_are_the_models(cell, bi, layers):
    """The shape check computes shapes from the config; they must be the built model's."""
    common = dict(embed_dim=3, hidden_size=5, num_layers=layers, cell=cell, bidirectional=bi)
    for cls, cfg in [(SequenceClassifier, ClassifierConfig(7, 3, pooling="mean", **common)),
                     (SequenceClassifier, ClassifierConfig(7, 3, pooling="last", **common)),
                     (SequenceTagger, TaggerConfig(7, 4, **common)),
                     (Seq2Seq, Seq2SeqConfig(7, 6, **common))]:
        model = cls(cfg)
        assert cls.param_shapes(cfg) == {k: v.shape for k, v in model.params.items()}


# --------------------------------------------------------------------------- NaN / Inf

def _inject(monkeypatch, task, bad_steps=(), where="loss", sigint_at=None):
    """Training steps ``bad_steps`` (1-based) of this task's model see a NaN loss or an Inf
    gradient; at step ``sigint_at`` a real SIGINT arrives (as from Ctrl-C)."""
    cls = MODEL_CLASS[task]
    real = cls.batch_loss
    calls = {"n": 0}

    def faulty(self, batch, *, training=False, rng=None):
        loss, grads = real(self, batch, training=training, rng=rng)
        if not training:  # held-out evaluation
            return loss, grads
        calls["n"] += 1
        if calls["n"] in bad_steps:
            if where == "loss":
                loss = float("nan")
            else:
                grads = dict(grads)
                name = sorted(grads)[0]
                grads[name] = grads[name].copy()
                grads[name].flat[0] = np.inf
        if calls["n"] == sigint_at:
            signal.raise_signal(signal.SIGINT)
        return loss, grads

    monkeypatch.setattr(cls, "batch_loss", faulty)
    return calls


def _params(path):
    arrays, meta = load_checkpoint(path)
    return {k: v for k, v in arrays.items() if k.startswith("param/")}, meta


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nonfinite_stops_with_one_line_and_keeps_the_last_checkpoint(where, monkeypatch, data,
                                                                      reference, tmp_path,
                                                                      capsys, recwarn):
    _inject(monkeypatch, "classify", {11}, where)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(train_argv("classify", data, out)) == 1
    stdout, err = capsys.readouterr()
    line = one_line(err)
    assert stdout == ""
    assert line.startswith("rnnkit classify: error: non-finite loss or gradients at step 11")
    assert f"the last good checkpoint (step 8) in {out / 'checkpoint.safetensors'} is kept" in line
    assert "--on-nonfinite skip" in line
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    params, meta = _params(out / "checkpoint.safetensors")
    assert meta["step"] == 8 and all(np.isfinite(v).all() for v in params.values())
    assert not (out / "model.safetensors").exists()
    # The kept checkpoint resumes (the fault is gone) to the very run never disturbed.
    monkeypatch.undo()
    assert main(train_argv("classify", data, out, "--resume")) == 0
    _assert_same_run(reference / "classify", out)


def test_nonfinite_stop_through_the_api_names_the_step(monkeypatch, tmp_path):
    calls = _inject(monkeypatch, "classify", {3})
    model, make, n = _tiny_classifier()
    with pytest.raises(TrainingError, match="non-finite loss or gradients at step 3") as info:
        fit(model, make, n, steps=10, batch_size=4, lr=0.01)
    assert "\n" not in str(info.value)
    calls["n"] = 0
    with pytest.raises(TrainingError, match="before the first checkpoint was written"):
        fit(model, make, n, steps=10, batch_size=4, lr=0.01,
            checkpoint=tmp_path / "c.safetensors", checkpoint_every=5)


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nonfinite_skip_counts_and_reports(where, monkeypatch, data, tmp_path, capsys, recwarn):
    _inject(monkeypatch, "tag", {2, 3, 8, 30}, where)  # 8 and 30 are checkpoint steps
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(train_argv("tag", data, out, "--on-nonfinite", "skip")) == 0
    stdout, err = capsys.readouterr()
    assert "4 step(s) skipped for a NaN/Inf loss or gradient" in stdout and err == ""
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    params, meta = _params(out / "checkpoint.safetensors")
    assert meta["step"] == 30 and meta["skipped"] == 4
    assert all(np.isfinite(v).all() for v in params.values())
    _, mmeta = load_checkpoint(out / "model.safetensors")
    assert mmeta["info"]["skipped_steps"] == 4
    assert np.isfinite(load_bundle(out, "tag")[0].params["out.weight"]).all()


def test_skipped_step_leaves_the_weights_untouched(monkeypatch, tmp_path):
    """Skipping step 3 of 3 ends with the weights after step 2."""
    model, make, n = _tiny_classifier()
    fit(model, make, n, steps=2, batch_size=4, lr=0.01, keep_best=False)
    _inject(monkeypatch, "classify", {3})
    other, make, n = _tiny_classifier()
    result = fit(other, make, n, steps=3, batch_size=4, lr=0.01, on_nonfinite="skip")
    assert result.skipped == 1 and result.steps == 3
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, other.params[k], err_msg=k)


def test_update_that_makes_the_weights_nonfinite_stops(monkeypatch, data, tmp_path, capsys):
    real = Adam.step
    calls = {"n": 0}

    def overflowing(self, params, grads):
        real(self, params, grads)
        calls["n"] += 1
        if calls["n"] == 7:
            params["out.bias"][0] = np.inf

    monkeypatch.setattr(Adam, "step", overflowing)
    out = tmp_path / "run"
    for mode in ("stop", "skip"):
        calls["n"] = 0
        capsys.readouterr()
        assert main(train_argv("seq2seq", data, out, "--on-nonfinite", mode, "--force")) == 1
        line = one_line(capsys.readouterr().err)
        assert "the update at step 7 made the weights NaN or Inf; stopped; the last good " \
               "checkpoint (step 4)" in line
        params, meta = _params(out / "checkpoint.safetensors")
        assert meta["step"] == 4 and all(np.isfinite(v).all() for v in params.values())


def test_a_diverging_run_is_one_line_without_numpy_warnings(data, tmp_path, capsys, recwarn):
    capsys.readouterr()
    code = main(["classify", "train", str(data["classify"]), "--out", str(tmp_path / "m"),
                 "--hidden", "8", "--embed", "4", "--steps", "20", "--lr", "1e38", "--quiet"])
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("rnnkit classify: error: ")
    assert "non-finite loss or gradients at step" in line or "made the weights NaN or Inf" in line
    assert "before the first checkpoint" in line
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# --------------------------------------------------------------------------- checkpoint / resume

def _without_seconds(obj):
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def _assert_same_run(a: Path, b: Path, steps=30):
    """Bit-identical weights (model and training state), the same bookkeeping and metrics;
    only the wall-clock seconds may differ."""
    for name in ("checkpoint.safetensors", "model.safetensors"):
        arrays_a, meta_a = load_checkpoint(a / name)
        arrays_b, meta_b = load_checkpoint(b / name)
        assert set(arrays_a) == set(arrays_b), name
        for k in arrays_a:
            assert arrays_a[k].dtype == arrays_b[k].dtype, (name, k)
            assert np.array_equal(arrays_a[k], arrays_b[k]), (name, k)
        if name == "model.safetensors":
            assert _without_seconds(meta_a) == _without_seconds(meta_b)
        else:
            assert meta_b["step"] == steps
            for m in (meta_a, meta_b):
                m["run"]["options"].pop("resume", None)
                m["run"]["options"].pop("out")
            assert _without_seconds(meta_a) == _without_seconds(meta_b)
    metrics = [[_without_seconds(json.loads(x)) for x in (d / "metrics.jsonl").read_text()
                .splitlines()] for d in (a, b)]
    assert metrics[0] == metrics[1] and len(metrics[0]) == 5


@pytest.mark.parametrize("task, at", [("classify", 13), ("tag", 8), ("seq2seq", 17)])
def test_ctrl_c_saves_and_resume_gives_identical_weights(task, at, monkeypatch, data, reference,
                                                         tmp_path, capsys):
    """A Ctrl-C mid-epoch (and, for tag, right on a checkpoint step) saves the state and exits
    130; --resume ends with exactly the uninterrupted run's weights, model file and metrics."""
    _inject(monkeypatch, task, sigint_at=at)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(train_argv(task, data, out)) == 130
    stdout, err = capsys.readouterr()
    assert f"interrupted; resume with --resume: step {at} of 30" in stdout
    assert "Traceback" not in err
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["step"] == at
    assert load_bundle(out, task)[0] is not None  # the directory is usable meanwhile
    monkeypatch.undo()
    assert main(train_argv(task, data, out, "--resume")) == 0
    _assert_same_run(reference / task, out)


def test_uninterrupted_run_leaves_its_final_state(reference):
    for task in TASKS:
        arrays, meta = load_training_state(reference / task / "checkpoint.safetensors")
        assert meta["step"] == 30 and meta["run"]["task"] == task
        assert any(k.startswith("opt/") for k in arrays) and "order/indices" in arrays
        assert any(k.startswith("best/") for k in arrays)  # best-by-validation bookkeeping


@pytest.fixture
def interrupted(data, tmp_path, monkeypatch):
    """A classify run stopped by Ctrl-C at step 10."""
    out = tmp_path / "run"
    _inject(monkeypatch, "classify", sigint_at=10)
    assert main(train_argv("classify", data, out)) == 130
    monkeypatch.undo()
    return out


@pytest.mark.parametrize("extra, match", [
    (["--hidden", "9"], "options differ from the checkpoint's: --hidden (8 -> 9)"),
    (["--lr", "0.01", "--cell", "gru"], "--cell ('lstm' -> 'gru'), --lr (0.02 -> 0.01)"),
    (["--dropout", "0"], "--dropout (0.2 -> 0.0)"),
])
def test_resume_refuses_other_options(extra, match, interrupted, data, capsys):
    before = (interrupted / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert main(train_argv("classify", data, interrupted, *extra, "--resume")) == 2
    line = one_line(capsys.readouterr().err)
    assert match in line, line
    assert (interrupted / "checkpoint.safetensors").read_bytes() == before


def test_resume_checks_data_by_content(interrupted, data, tmp_path, capsys):
    # The same data under another name is the same data.
    copy = tmp_path / "copy.tsv"
    copy.write_bytes(data["classify"].read_bytes() + b"\n\n")  # blank lines do not count
    argv = train_argv("classify", data, interrupted, "--resume", "--steps", "12")
    argv[2] = str(copy)
    assert main(argv) == 0
    changed = tmp_path / "changed.tsv"
    changed.write_text(data["classify"].read_text().replace("\tA", "\tB", 1), encoding="utf-8")
    argv[2] = str(changed)
    capsys.readouterr()
    assert main(argv) == 2
    assert "--resume: the training data differs" in one_line(capsys.readouterr().err)
    argv = train_argv("classify", data, interrupted, "--resume")
    argv[argv.index("--val") + 1] = str(data["classify"])
    assert main(argv) == 2
    assert "--resume: the validation data differs" in one_line(capsys.readouterr().err)
    without_val = ["classify", "train", str(data["classify"]), "--out", str(interrupted), *RUN,
                   "--resume"]
    assert main(without_val) == 2
    assert "give the same --val" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("edit, match", [
    (lambda a, m: m.__setitem__("step", -3), "step must be >= 0"),
    (lambda a, m: m.__setitem__("step", 31), "past the 30 steps"),
    (lambda a, m: m["source"].__setitem__("rng", {"bit_generator": "os.system"}), "rng state"),
    (lambda a, m: m["source"].__setitem__("order_pos", 99), "position past the epoch's end"),
    (lambda a, m: a.__setitem__("order/indices", a["order/indices"] + 1000), "indices outside"),
    (lambda a, m: a.pop("order/bounds"), "order/bounds"),
    (lambda a, m: m.pop("optimizer"), "optimizer"),
    (lambda a, m: m["run"]["options"].__setitem__("batch", 4),
     "options differ from the checkpoint's: --batch (4 -> 8)"),
    (lambda a, m: m.__setitem__("running", ["x"]), "running loss"),
    (lambda a, m: m.__setitem__("history", 5), "does not fit this run"),
    (lambda a, m: a.__setitem__("param/out.bias", np.full_like(a["param/out.bias"], np.nan)),
     "NaN or Inf"),
    (lambda a, m: a.__setitem__("param/out.bias", np.zeros(5, np.float32)), "out.bias"),
    (lambda a, m: a.pop("param/out.bias"), "missing ['out.bias']"),
    (lambda a, m: m.__setitem__("kind", "language_model_training"),
     "is not a training checkpoint"),
    (lambda a, m: m["run"].__setitem__("task", "tag"), "not the training state of a classify"),
    (lambda a, m: m["run"].__setitem__("options", None), "holds no run options"),
])
def test_resume_refuses_a_forged_training_state(edit, match, interrupted, data, capsys):
    path = interrupted / "checkpoint.safetensors"
    arrays, meta = load_checkpoint(path)
    edit(arrays, meta)
    save_checkpoint(path, arrays, meta)  # a valid checksum over bad content
    before = path.read_bytes()
    capsys.readouterr()
    assert main(train_argv("classify", data, interrupted, "--resume")) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("rnnkit classify: error: ") and match in line, line
    assert path.read_bytes() == before


def test_resume_and_force_mistakes(interrupted, reference, data, tmp_path, capsys):
    def err_of(argv):
        capsys.readouterr()
        assert main(argv) == 2
        return one_line(capsys.readouterr().err)

    assert "--resume: no checkpoint.safetensors in" in err_of(
        train_argv("classify", data, tmp_path / "nothing", "--resume"))
    assert not (tmp_path / "nothing").exists()
    model_only = tmp_path / "model_only"
    model_only.mkdir()
    (model_only / "model.safetensors").write_bytes(
        (reference / "classify" / "model.safetensors").read_bytes())
    assert "start over with --force" in err_of(
        train_argv("classify", data, model_only, "--resume"))
    # A directory with a run in it is not overwritten without --force...
    assert "already holds a model: --resume continues it, --force starts over" in err_of(
        train_argv("classify", data, interrupted))
    (interrupted / "model.safetensors").unlink()
    assert "already holds a training run (checkpoint.safetensors): --resume continues it, " \
           "--force starts over" in err_of(train_argv("classify", data, interrupted))
    # ... and --force starts over: the old training state can never be resumed by mistake.
    assert main(train_argv("classify", data, interrupted, "--force", "--steps", "3")) == 0
    assert load_checkpoint(interrupted / "checkpoint.safetensors")[1]["step"] == 3
    corrupt = interrupted / "checkpoint.safetensors"
    corrupt.write_bytes(b"\x00" * 20)
    assert "checkpoint.safetensors: not an rnnkit checkpoint" in err_of(
        train_argv("classify", data, interrupted, "--resume"))
    assert corrupt.read_bytes() == b"\x00" * 20


def test_resume_cleans_what_a_kill_leaves(interrupted, data):
    stale = [interrupted / ".checkpoint.safetensors.k1ll3d.tmp",
             interrupted / ".model.safetensors.abc123.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    assert main(train_argv("classify", data, interrupted, "--resume", "--steps", "12")) == 0
    assert not any(p.exists() for p in stale)


def _tiny_classifier(dropout=0.0):
    rng = np.random.default_rng(5)
    xs = [rng.integers(3, 6, rng.integers(1, 5)) for _ in range(24)]
    ys = np.array([int(x[0] == 4) for x in xs])
    from rnnkit.models._blocks import pad_batch

    def make(idx):
        ids, lengths = pad_batch([xs[i] for i in idx])
        return {"ids": ids, "lengths": lengths, "labels": ys[idx]}
    model = SequenceClassifier(ClassifierConfig(6, 2, embed_dim=4, hidden_size=6, cell="gru",
                                                dropout=dropout, seed=1))
    return model, make, len(xs)


def test_fit_resumes_through_the_api(tmp_path, monkeypatch):
    """fit() itself, on another model: Ctrl-C at step 13, then resume_state, ends exactly
    where one uninterrupted run ends.  The held-out labels are the training labels flipped,
    so the held-out loss grows: the best weights are an early step's, and the plateau
    schedule decays the learning rate — both must come back from the checkpoint."""
    x = np.random.default_rng(0).standard_normal((40, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    make = lambda idx: {"x": x[idx], "labels": y[idx]}  # noqa: E731
    make_val = lambda idx: {"x": x[idx], "labels": 1 - y[idx]}  # noqa: E731
    cfg = FeedForwardConfig(3, 2, hidden_sizes=[8], dropout=0.3, seed=0)
    kw = dict(batch_size=6, lr=0.05, seed=4, eval_every=4, checkpoint_every=5, lr_decay=0.5,
              val=(make_val, 40))
    ref = FeedForward(cfg)
    expected = fit(ref, make, 40, steps=23, checkpoint=tmp_path / "ref.safetensors", **kw)
    assert expected.best_step == 4 and len(expected.history) == 6

    real = FeedForward.batch_loss
    calls = {"n": 0}

    def interrupting(self, batch, *, training=False, rng=None):
        if training:
            calls["n"] += 1
            if calls["n"] == 13:
                signal.raise_signal(signal.SIGINT)
        return real(self, batch, training=training, rng=rng)

    monkeypatch.setattr(FeedForward, "batch_loss", interrupting)
    ckpt = tmp_path / "run.safetensors"
    first = fit(FeedForward(cfg), make, 40, steps=23, checkpoint=ckpt, **kw)
    assert first.interrupted and first.steps == 13
    assert load_training_state(ckpt)[1]["step"] == 13
    monkeypatch.undo()
    again = FeedForward(cfg)
    result = fit(again, make, 40, steps=23, checkpoint=ckpt,
                 resume_state=load_training_state(ckpt), **kw)
    assert result.start_step == 13 and result.steps == 23 and not result.interrupted
    assert (result.best_step, result.val_loss) == (expected.best_step, expected.val_loss)
    assert _without_seconds(result.history) == _without_seconds(expected.history)
    for k, v in ref.params.items():  # the best (step 4) weights
        assert np.array_equal(v, again.params[k]), k
    a, ma = load_training_state(tmp_path / "ref.safetensors")
    b, mb = load_training_state(ckpt)
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert ma["optimizer"]["lr"] == mb["optimizer"]["lr"] < 0.05
    with pytest.raises(ValueError, match=r"options differ from the checkpoint.s: --batch-size \(6 -> 7\)"):
        fit(FeedForward(cfg), make, 40, steps=23, checkpoint=ckpt,
            resume_state=load_training_state(ckpt), **{**kw, "batch_size": 7})
    with pytest.raises(ValueError, match="n-train"):
        fit(FeedForward(cfg), make, 39, steps=23, checkpoint=ckpt,
            resume_state=load_training_state(ckpt), **kw)


def _old_batch_indices(n, batch_size, rng, length_fn=None, bucket=50):
    """The generator BatchOrder replaced, verbatim: a seed must keep giving the same model."""
    lengths = None if length_fn is None else np.array([length_fn(i) for i in range(n)])
    while True:
        order = rng.permutation(n)
        if lengths is None:
            for i in range(0, n, batch_size):
                yield order[i: i + batch_size]
            continue
        batches = []
        span = batch_size * bucket
        for i in range(0, n, span):
            chunk = order[i: i + span]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[j: j + batch_size] for j in range(0, len(chunk), batch_size))
        for k in rng.permutation(len(batches)):
            yield batches[k]


@pytest.mark.parametrize("bucketed", [False, True])
def test_batch_order_is_the_old_order_and_restores_mid_epoch(bucketed):
    lengths = np.random.default_rng(1).integers(1, 30, 203)
    fn = (lambda i: lengths[i]) if bucketed else None
    rng_old, rng_new = np.random.default_rng(9), np.random.default_rng(9)
    old = _old_batch_indices(203, 4, rng_old, fn, bucket=5)
    new = BatchOrder(203, 4, rng_new, fn, bucket=5)
    for _ in range(140):  # almost three epochs
        assert np.array_equal(next(old), next(new))
        assert rng_old.random() == rng_new.random()  # dropout draws share the generator
    state, rng_state = new.state(), new.rng.bit_generator.state
    expected = [next(new) for _ in range(60)]
    copy = BatchOrder(203, 4, np.random.default_rng(), fn, bucket=5)
    copy.rng.bit_generator.state = rng_state
    copy.load_state(*state)
    assert all(np.array_equal(a, next(copy)) for a in expected)


# --------------------------------------------------------------------------- a real Ctrl-C

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
LONG = ["--steps", "200", "--checkpoint-every", "5"]


def test_real_ctrl_c_exits_130_and_resume_matches(data, tmp_path):
    """``rnnkit classify train`` as a real process: SIGINT mid-run saves and exits 130 with the
    resume hint and no traceback; --resume ends with the uninterrupted run's weights."""
    cmd = [sys.executable, "-m", "rnnkit.cli"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    reference = subprocess.Popen([*cmd, *train_argv("classify", data, ref, *LONG)], env=ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([*cmd, *train_argv("classify", data, out, *LONG)], env=ENV,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.safetensors").exists():
        assert proc.poll() is None, (tmp_path / "run.log").read_text()
        assert time.monotonic() < deadline, "training made no progress in 120 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    log.close()
    text = (tmp_path / "run.log").read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert "interrupted; resume with --resume: step " in text
    step = load_checkpoint(out / "checkpoint.safetensors")[1]["step"]
    assert 0 < step < 200
    assert reference.wait(timeout=120) == 0, reference.stderr.read()
    r = subprocess.run([*cmd, *train_argv("classify", data, out, *LONG, "--resume")], env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("checkpoint.safetensors", "model.safetensors"):
        a, _ = load_checkpoint(ref / name)
        b, _ = load_checkpoint(out / name)
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a), name


# --------------------------------------------------------------------------- small things

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_length_penalty_must_be_finite(value, reference, data, capsys):
    capsys.readouterr()
    # Checked before the model is read: a missing model directory is not what is reported.
    assert main(["seq2seq", "predict", str(reference / "nope"), f"--length-penalty={value}",
                 "--beam", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--length-penalty must be a finite number" in one_line(err)
    model, _ = load_bundle(reference / "seq2seq", "seq2seq")
    src = np.array([[3, 4]])
    with pytest.raises(ValueError, match="length_penalty must be a finite number"):
        model.beam_search(src, beam_size=2, length_penalty=float(value))
    model.beam_search(src, beam_size=2, length_penalty=0.7)  # a finite one is fine


@pytest.mark.parametrize("task", TASKS)
def test_task_without_an_action_is_one_line(task, capsys):
    assert main([task]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"rnnkit {task}: error: choose an action: train or predict\n"


@pytest.mark.parametrize("value", ["0.5", b"0.5", None, True, [0.1], np.array(0.1)])
def test_probability_refuses_non_numbers(value):
    with pytest.raises(TypeError, match="dropout must be a number in"):
        _checks.check_probability(value, "dropout")
    with pytest.raises(TypeError, match="dropout must be a number in"):
        SequenceClassifier(ClassifierConfig(5, 2, dropout=value))


def test_probability_still_takes_numbers():
    for v in (0, 0.0, 0.5, np.float32(0.25), np.float64(0.1), np.int64(0)):
        assert _checks.check_probability(v, "dropout") == float(v)
    for v in (1, 1.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
            _checks.check_probability(v, "dropout")


def test_fit_refuses_bad_reliability_arguments(tmp_path):
    """fit's own arguments: a bad on_nonfinite, checkpoint_every or clip is refused; a good
    run gives no warning."""
    model, make, n = _tiny_classifier()
    for kw, match in [(dict(on_nonfinite="ignore"), "on_nonfinite must be stop or skip"),
                      (dict(checkpoint=tmp_path / "c", checkpoint_every=0), "checkpoint_every"),
                      (dict(clip=float("inf")), "clip must be a finite number"),
                      (dict(resume_state=({}, {})), "needs the checkpoint path")]:
        with pytest.raises(ValueError, match=match):
            fit(model, make, n, steps=2, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, make, n, steps=2, batch_size=4)
