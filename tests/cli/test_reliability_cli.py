"""Reliability through the real ``rnnkit`` command: one clear line for every bad input, crash
safety under SIGKILL at random moments, Ctrl-C, and NaN/Inf during training.

Most bad inputs run in process through ``rnnkit.cli.main`` (what the ``rnnkit`` script calls);
a few, and every signal test, run ``python -m rnnkit.cli`` as a real subprocess.
"""

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli import main

TEXT = "".join(f"the {a} {v} on the {b}.\n" for a in ("cat", "dog", "bird")
               for v in ("sat", "ran", "slept") for b in ("mat", "rug", "sofa", "floor")) * 8
TINY = ["--layers", "1", "--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch", "4",
        "--steps", "3"]
TASK = ["--hidden", "8", "--embed", "4", "--steps", "3", "--batch", "4", "--quiet"]


@pytest.fixture(scope="module")
def p(tmp_path_factory):
    """Every file the bad-input table points at, and a tiny model of each kind."""
    d = tmp_path_factory.mktemp("inputs")
    files = {
        "corpus": TEXT.encode(),
        "empty": b"",
        "blank": b"  \n\n\t\n",
        "binary": bytes(range(256)) * 4,
        "latin1": "d\u00e9j\u00e0 vu, \u00e7a va\n".encode("latin-1") * 20,
        "utf16": "the cat sat\n".encode("utf-16"),
        "short": b"the cat sat on the mat.\nthe dog ran.\n",
        "cls": "good film\tpos\nbad film\tneg\ngreat\tpos\nawful\tneg\n".encode(),
        "cls_no_tab": "good film\tpos\n\nbad film neg\n".encode(),
        "cls_3_fields": "good film\tpos\textra\n".encode(),
        "cls_no_label": "good film\tpos\nbad film\t  \n".encode(),
        "cls_val_new_label": "fine\tmeh\n".encode(),
        "tag": "the cat\tD N\na dog runs\tD N V\n".encode(),
        "tag_mismatch": "the cat\tD N\na dog runs\tD N\n".encode(),
        "s2s": "abc\tcba\nxy\tyx\n".encode(),
        "s2s_no_target": "abc\tcba\nxy\t\n".encode(),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = d / f"{name}.txt"
        paths[name].write_bytes(data)
    paths["dir"] = d
    paths["missing"] = d / "no_such_file.txt"
    paths["nomodel"] = d / "no_such_model"
    (d / "emptydir").mkdir()
    paths["emptydir"] = d / "emptydir"
    paths["lm"] = d / "lm"
    assert main(["train", str(paths["corpus"]), "--out", str(paths["lm"]), *TINY]) == 0
    paths["model_only"] = d / "model_only"  # a run killed before its first checkpoint
    paths["model_only"].mkdir()
    (paths["model_only"] / "model.safetensors").write_bytes(
        (paths["lm"] / "model.safetensors").read_bytes())
    for task, data in (("classify", "cls"), ("tag", "tag"), ("seq2seq", "s2s")):
        paths[task + "_model"] = d / task
        assert main([task, "train", str(paths[data]), "--out", str(d / task), *TASK]) == 0
    return SimpleNamespace(**{k: str(v) for k, v in paths.items()})


def _out(tmp):
    return str(tmp / "out")


# (id, argv from (paths, fresh output dir), what the one line must say)
BAD_INPUTS = [
    # ---- rnnkit train: the corpus
    ("train-corpus-missing", lambda p, o: ["train", p.missing, "--out", o, *TINY], "no such file"),
    ("train-corpus-empty", lambda p, o: ["train", p.empty, "--out", o, *TINY], "the file is empty"),
    ("train-corpus-blank", lambda p, o: ["train", p.blank, "--out", o, *TINY], "only whitespace"),
    ("train-corpus-binary", lambda p, o: ["train", p.binary, "--out", o, *TINY],
     "NUL byte at offset 0; this looks like a binary file"),
    ("train-corpus-not-utf8", lambda p, o: ["train", p.latin1, "--out", o, *TINY],
     "not valid UTF-8: byte 0xe9 at offset 1"),
    ("train-corpus-utf16", lambda p, o: ["train", p.utf16, "--out", o, *TINY],
     "this looks like UTF-16 text (it starts with a byte-order mark); save it as UTF-8"),
    ("train-corpus-directory", lambda p, o: ["train", p.dir, "--out", o, *TINY], "is a directory"),
    ("train-corpus-shorter-than-a-batch",
     lambda p, o: ["train", p.short, "--out", o, *TINY[:-6], "--batch", "32", "--seq-len", "100"],
     "too short for one batch: batch_size 32 x (seq_len 100 + 1) needs 3232 tokens"),
    ("train-one-of-two-corpora-missing",
     lambda p, o: ["train", p.corpus, p.missing, "--out", o, *TINY], "no_such_file.txt: no such"),
    ("train-val-missing", lambda p, o: ["train", p.corpus, "--val", p.missing, "--out", o, *TINY],
     "no such file"),
    ("train-val-binary", lambda p, o: ["train", p.corpus, "--val", p.binary, "--out", o, *TINY],
     "NUL byte"),
    # ---- rnnkit train: options
    ("train-unknown-cell", lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--cell", "tcn"],
     "unknown cell 'tcn': expected rnn, gru or lstm"),
    *[(f"train-{flag[2:]}-{v}", (lambda flag, v: lambda p, o: ["train", p.corpus, "--out", o,
                                                               *TINY, flag, v])(flag, v),
       f"{flag[2:]} must be >= 1, got {v}")
      for flag, v in [("--hidden", "0"), ("--hidden", "-16"), ("--embed", "0"), ("--layers", "0"),
                      ("--layers", "-2"), ("--steps", "0"), ("--steps", "-100"),
                      ("--seq-len", "0"), ("--seq-len", "-5"), ("--batch", "0"),
                      ("--batch", "-1"), ("--checkpoint-every", "0"), ("--eval-every", "0"),
                      ("--log-every", "0")]],
    ("train-hidden-not-a-number", lambda p, o: ["train", p.corpus, "--out", o, "--hidden", "big"],
     "argument --hidden: invalid int value: 'big'"),
    *[(f"train-dropout-{v}", (lambda v: lambda p, o: ["train", p.corpus, "--out", o, *TINY,
                                                      "--dropout", v])(v),
       r"dropout must lie in [0, 1)") for v in ("1", "1.5", "-0.1", "nan")],
    *[(f"train-lr-{v}", (lambda v: lambda p, o: ["train", p.corpus, "--out", o, *TINY,
                                                 "--lr", v])(v),
       "lr must be > 0") for v in ("0", "-0.001", "nan", "inf")],
    ("train-lr-not-a-number", lambda p, o: ["train", p.corpus, "--out", o, "--lr", "fast"],
     "argument --lr: invalid float value: 'fast'"),
    ("train-clip-negative", lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--clip", "-1"],
     "clip must be >= 0"),
    ("train-seed-negative", lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--seed", "-1"],
     "--seed must be >= 0, got -1"),
    ("train-unknown-level", lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--level", "byte"],
     "unknown level 'byte'"),
    ("train-unknown-optimizer",
     lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--optimizer", "rmsprop"],
     "unknown optimizer 'rmsprop'"),
    ("train-unknown-on-nonfinite",
     lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--on-nonfinite", "ignore"],
     "on-nonfinite must be stop or skip"),
    ("train-max-vocab-too-small",
     lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--max-vocab", "3"], "max-vocab must be >= 4"),
    ("train-val-fraction-1",
     lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--val-fraction", "1"], "val-fraction"),
    ("train-out-is-a-file", lambda p, o: ["train", p.corpus, "--out", p.corpus, *TINY],
     "exists and is not a directory"),
    ("train-out-holds-a-model", lambda p, o: ["train", p.corpus, "--out", p.lm, *TINY],
     "already holds a model: --resume continues it, --force starts over"),
    ("train-resume-nothing", lambda p, o: ["train", p.corpus, "--out", o, *TINY, "--resume"],
     "--resume: no checkpoint.safetensors in"),
    ("train-resume-before-first-checkpoint",
     lambda p, o: ["train", p.corpus, "--out", p.model_only, *TINY, "--resume"],
     "no checkpoint.safetensors in"),
    ("train-resume-other-options",
     lambda p, o: ["train", p.corpus, "--out", p.lm, *TINY[:-8], "--hidden", "9", *TINY[4:],
                   "--resume"], "--resume: options differ from the checkpoint's: --hidden (8 -> 9)"),
    ("train-no-out", lambda p, o: ["train", p.corpus], "the following arguments are required: --out"),
    ("train-unknown-option", lambda p, o: ["train", p.corpus, "--out", o, "--hiden", "8"],
     "unrecognized arguments: --hiden"),
    ("no-such-command", lambda p, o: ["trian", p.corpus], "invalid choice: 'trian'"),
    # ---- rnnkit eval / score
    ("eval-model-missing", lambda p, o: ["eval", p.nomodel, p.corpus],
     "no such model directory or file"),
    ("eval-model-dir-empty", lambda p, o: ["eval", p.emptydir, p.corpus],
     "no model.safetensors in this directory"),
    ("eval-model-is-text", lambda p, o: ["eval", p.corpus, p.corpus], "not a checkpoint"),
    ("eval-file-missing", lambda p, o: ["eval", p.lm, p.missing], "no such file"),
    ("eval-file-empty", lambda p, o: ["eval", p.lm, p.empty], "the file is empty"),
    ("eval-file-binary", lambda p, o: ["eval", p.lm, p.binary], "NUL byte"),
    ("eval-file-not-utf8", lambda p, o: ["eval", p.lm, p.latin1], "not valid UTF-8"),
    ("eval-file-directory", lambda p, o: ["eval", p.lm, p.dir], "is a directory"),
    ("eval-streams-0", lambda p, o: ["eval", p.lm, p.corpus, "--streams", "0"],
     "streams must be >= 1"),
    ("score-model-missing", lambda p, o: ["score", p.nomodel, "the cat"], "no such model"),
    ("score-two-lines", lambda p, o: ["score", p.lm, "the cat\nsat"],
     "score takes one sentence per text"),
    ("score-no-text", lambda p, o: ["score", p.lm], "the following arguments are required: TEXT"),
    # ---- rnnkit sample
    *[(f"sample-temperature-{v}", (lambda v: lambda p, o: ["sample", p.lm, f"--temperature={v}"])(v),
       "temperature must be > 0") for v in ("0", "-1", "nan", "-inf")],
    ("sample-temperature-not-a-number", lambda p, o: ["sample", p.lm, "--temperature", "hot"],
     "temperature must be a number, got 'hot'"),
    *[(f"sample-top-p-{v}", (lambda v: lambda p, o: ["sample", p.lm, "--top-p", v])(v),
       "top-p must lie in (0, 1]") for v in ("0", "1.5", "-0.2", "nan")],
    ("sample-top-k-0", lambda p, o: ["sample", p.lm, "--top-k", "0"], "top-k must be >= 1"),
    ("sample-length-negative", lambda p, o: ["sample", p.lm, "--length", "-1"],
     "length must be >= 0, got -1"),
    ("greedy-length-negative", lambda p, o: ["sample", p.lm, "--greedy", "--length", "-3"],
     "length must be >= 0"),
    ("beam-length-negative", lambda p, o: ["sample", p.lm, "--beam", "2", "--length", "-3"],
     "length must be >= 0"),
    ("sample-num-0", lambda p, o: ["sample", p.lm, "--num", "0"], "num must be >= 1"),
    ("sample-beam-0", lambda p, o: ["sample", p.lm, "--beam", "0"], "beam must be >= 1"),
    ("sample-seed-negative", lambda p, o: ["sample", p.lm, "--seed", "-5"], "--seed must be >= 0"),
    ("sample-greedy-and-beam", lambda p, o: ["sample", p.lm, "--greedy", "--beam", "2"],
     "not allowed with"),
    ("sample-prime-outside-vocab", lambda p, o: ["sample", p.lm, "--prime", "The Zebra"],
     "prime text has tokens outside the model's vocabulary: 'T', 'Z'"),
    ("greedy-prime-outside-vocab", lambda p, o: ["sample", p.lm, "--greedy", "--prime", "\u00e9"],
     "outside the model's vocabulary: '\u00e9'"),
    ("beam-prime-outside-vocab", lambda p, o: ["sample", p.lm, "--beam", "3", "--prime", "Q"],
     "outside the model's vocabulary: 'Q'"),
    ("sample-model-missing", lambda p, o: ["sample", p.nomodel], "no such model directory or file"),
    ("sample-model-dir-empty", lambda p, o: ["sample", p.emptydir], "no model.safetensors"),
    ("sample-task-model", lambda p, o: ["sample", p.classify_model], "not a language model"),
    # ---- rnnkit classify | tag | seq2seq
    ("classify-tsv-no-tab", lambda p, o: ["classify", "train", p.cls_no_tab, "--out", o, *TASK],
     "cls_no_tab.txt: line 3: expected two fields separated by one TAB, found 1"),
    ("classify-tsv-3-fields",
     lambda p, o: ["classify", "train", p.cls_3_fields, "--out", o, *TASK], "line 1: expected two"),
    ("classify-tsv-empty-label",
     lambda p, o: ["classify", "train", p.cls_no_label, "--out", o, *TASK], "line 2: empty label"),
    ("classify-val-unknown-label",
     lambda p, o: ["classify", "train", p.cls, "--val", p.cls_val_new_label, "--out", o, *TASK],
     "line 1: label 'meh' does not occur in the training data"),
    ("tag-tsv-count-mismatch",
     lambda p, o: ["tag", "train", p.tag_mismatch, "--out", o, *TASK],
     "line 2: 3 token(s) but 2 tag(s)"),
    ("seq2seq-tsv-empty-target",
     lambda p, o: ["seq2seq", "train", p.s2s_no_target, "--out", o, *TASK], "line 2: empty target"),
    ("classify-data-missing", lambda p, o: ["classify", "train", p.missing, "--out", o, *TASK],
     "no such file"),
    ("classify-data-empty", lambda p, o: ["classify", "train", p.empty, "--out", o, *TASK],
     "the file is empty"),
    ("tag-data-binary", lambda p, o: ["tag", "train", p.binary, "--out", o, *TASK], "NUL byte"),
    ("seq2seq-data-not-utf8", lambda p, o: ["seq2seq", "train", p.latin1, "--out", o, *TASK],
     "not valid UTF-8"),
    ("classify-unknown-cell",
     lambda p, o: ["classify", "train", p.cls, "--out", o, *TASK, "--cell", "tcn"], "unknown cell"),
    *[(f"classify-{flag[2:]}-{v}", (lambda flag, v: lambda p, o: [
        "classify", "train", p.cls, "--out", o, *TASK, flag, v])(flag, v), f"{flag} must ")
      for flag, v in [("--hidden", "0"), ("--embed", "-1"), ("--layers", "0"), ("--steps", "0"),
                      ("--batch", "0"), ("--dropout", "1"), ("--dropout", "-0.5"), ("--lr", "0"),
                      ("--lr", "-1")]],
    ("classify-seed-negative",
     lambda p, o: ["classify", "train", p.cls, "--out", o, *TASK, "--seed", "-1"], "--seed must be"),
    ("classify-predict-model-missing", lambda p, o: ["classify", "predict", p.nomodel, p.cls],
     "no such model directory"),
    ("classify-predict-lm-model", lambda p, o: ["classify", "predict", p.lm, p.cls],
     "not a classify model"),
    ("tag-predict-classify-model", lambda p, o: ["tag", "predict", p.classify_model, p.cls],
     "not a tag model"),
    ("classify-predict-input-binary",
     lambda p, o: ["classify", "predict", p.classify_model, p.binary], "NUL byte"),
    ("classify-predict-batch-0",
     lambda p, o: ["classify", "predict", p.classify_model, p.cls, "--batch", "0"],
     "--batch must be a positive integer"),
    ("seq2seq-predict-beam-0",
     lambda p, o: ["seq2seq", "predict", p.seq2seq_model, p.s2s, "--beam", "0"],
     "--beam must be a positive integer"),
    ("classify-train-no-data", lambda p, o: ["classify", "train", "--out", o],
     "the following arguments are required: DATA.tsv"),
]


@pytest.mark.parametrize("make_argv, message", [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_and_nonzero(make_argv, message, p, tmp_path, capsys):
    out_dir = tmp_path / "out"
    argv = make_argv(p, str(out_dir))
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0 and code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Error:" not in err.split("error:")[0]
    assert lines[0].startswith("rnnkit"), lines[0]
    assert message in lines[0], lines[0]
    assert out == ""
    assert not out_dir.exists()  # nothing is written for a mistake


def test_bad_input_table_covers_the_issue():
    """The issue's list, item by item, has at least one case above."""
    ids = " ".join(c[0] for c in BAD_INPUTS)
    for needle in ("corpus-missing", "corpus-empty", "corpus-binary", "corpus-not-utf8",
                   "shorter-than-a-batch", "unknown-cell", "hidden-0", "hidden--16", "steps-0",
                   "layers-0", "seq-len-0", "dropout-1", "dropout--0.1", "lr-0", "lr--0.001",
                   "temperature-0", "temperature--1", "top-p-0", "top-p-1.5",
                   "length-negative", "prime-outside-vocab", "model-missing",
                   "model-dir-empty", "tsv-no-tab"):
        assert needle in ids, needle


# --------------------------------------------------------------------------- subprocesses

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def rnnkit(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "rnnkit.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


class _Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_real_command_bad_inputs_print_one_line(p, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model.safetensors").write_bytes(pickle.dumps({"w": _Marker(marker)}, protocol=4))
    cases = [
        (["train", p.latin1, "--out", tmp_path / "o", *TINY], "not valid UTF-8"),
        (["sample", evil], "this is a Python pickle"),
        (["sample", p.lm, "--top-p", "2"], "top-p must lie in (0, 1]"),
        (["classify", "train", p.cls_no_tab, "--out", tmp_path / "o"], "line 3"),
    ]
    for argv, message in cases:
        r = rnnkit(*argv)
        assert r.returncode == 2, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        assert message in r.stderr and r.stdout == ""
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


# Big enough to be killed mid-run a few times, small enough for a couple of seconds a run.
RUN = ["--cell", "lstm", "--layers", "1", "--hidden", "16", "--embed", "8", "--seq-len", "10",
       "--batch", "4", "--steps", "300", "--dropout", "0.1", "--lr", "0.01", "--seed", "11",
       "--checkpoint-every", "3", "--eval-every", "40", "--log-every", "20"]


@pytest.fixture(scope="module")
def reference(p, tmp_path_factory):
    """A run never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    r = rnnkit("train", p.corpus, "--out", out, *RUN)
    assert r.returncode == 0, r.stderr
    return out


def _step(run_dir: Path):
    path = run_dir / "checkpoint.safetensors"
    if not path.exists():
        return None
    return load_checkpoint(path)[1]["step"]  # never fails: writes are atomic


def _start(corpus, out, *extra):
    log = open(out.parent / f"{out.name}.log", "a")
    return subprocess.Popen([sys.executable, "-m", "rnnkit.cli", "train", corpus, "--out",
                             str(out), *RUN, *extra], stdout=log, stderr=subprocess.STDOUT,
                            env=ENV, text=True)


def _wait_for_progress(proc, out, after):
    """Until a checkpoint past step ``after`` is on disk (training is under way)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        step = _step(out)
        if step is not None and step > after:
            return step
        if proc.poll() is not None:
            return step
        time.sleep(0.001)
    proc.kill()
    raise AssertionError("training made no progress in 120 s")


def _assert_same_weights(a_dir: Path, b_dir: Path):
    for name in ("checkpoint.safetensors", "model.safetensors"):
        a, ma = load_checkpoint(a_dir / name)
        b, mb = load_checkpoint(b_dir / name)
        assert set(a) == set(b), name
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), (name, k)
        assert ma.get("step") == mb.get("step"), name
    assert load_checkpoint(b_dir / "checkpoint.safetensors")[1]["step"] == 300


def test_sigkill_at_random_moments_then_resume_gives_identical_weights(p, reference, tmp_path):
    rng = random.Random(20240606)
    out = tmp_path / "killed"
    last, kills = -1, []
    for attempt in range(3):
        proc = _start(p.corpus, out, *(["--resume"] if attempt else []))
        # Kill a few dozen steps on (a step takes a millisecond or two, so a wait in seconds
        # would often land after the run's end), at a random moment within a step or a save.
        _wait_for_progress(proc, out, max(last, 0) + rng.randint(3, 60))
        time.sleep(rng.uniform(0.0, 0.005))
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=30)
        # Whenever the kill landed, the last checkpoint on disk is whole and loads.
        arrays, meta = load_checkpoint(out / "checkpoint.safetensors")
        assert all(np.isfinite(v).all() for k, v in arrays.items() if v.dtype.kind == "f")
        assert meta["step"] >= max(last, 0)
        last = meta["step"]
        if rc == -signal.SIGKILL:
            kills.append(last)
        if last == 300:
            break
    print(f"SIGKILL landed after checkpoints at steps {kills}")
    assert len(kills) >= 2, f"too few kills landed mid-run: {kills}"
    r = rnnkit("train", p.corpus, "--out", out, *RUN, "--resume")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    _assert_same_weights(reference, out)
    assert not list(out.glob(".*.tmp"))  # what the kills left behind was cleaned up


_WRITER = """
import sys, numpy as np
from rnnkit.checkpoint import save_checkpoint
path = sys.argv[1]
i = 0
while True:
    i += 1
    save_checkpoint(path, {"w": np.full(1_500_000, i, np.float32), "v": np.arange(i)}, {"i": i})
    print(i, flush=True)
"""


def test_sigkill_during_checkpoint_writes_leaves_a_whole_file(tmp_path):
    """A process that does nothing but rewrite one checkpoint (6 MB a time), killed at random
    moments: the file on disk is always one whole version, never a mix or a torn write."""
    path = tmp_path / "checkpoint.safetensors"
    rng = random.Random(99)
    seen = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)],
                                stdout=subprocess.PIPE, text=True, env=ENV)
        proc.stdout.readline()  # one write done: the loop is running
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        arrays, meta = load_checkpoint(path)
        i = meta["i"]
        assert i >= 1 and np.all(arrays["w"] == i) and np.array_equal(arrays["v"], np.arange(i))
        seen += 1
    assert seen == 3


def test_ctrl_c_saves_exits_130_and_resumes_to_identical_weights(p, reference, tmp_path):
    out = tmp_path / "interrupted"
    proc = _start(p.corpus, out)
    _wait_for_progress(proc, out, -1)
    time.sleep(random.Random(7).uniform(0.05, 0.3))
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    log = (tmp_path / "interrupted.log").read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    assert "interrupted; resume with --resume" in log
    step = _step(out)
    assert 0 < step < 300
    assert (out / "model.safetensors").exists()
    r = rnnkit("train", p.corpus, "--out", out, *RUN, "--resume")
    assert r.returncode == 0, r.stderr
    _assert_same_weights(reference, out)


# --------------------------------------------------------------------------- NaN / Inf

DIVERGE = ["--cell", "lstm", "--layers", "1", "--hidden", "16", "--embed", "8", "--seq-len",
           "10", "--batch", "4", "--steps", "40", "--checkpoint-every", "1", "--eval-every",
           "1000", "--log-every", "1000", "--optimizer", "sgd", "--clip", "0", "--lr", "1e38"]


def _runtime_warnings(recwarn):
    # Shown on a terminal, numpy's overflow warnings would bury the one-line message.
    return [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_diverging_run_stops_with_one_line_and_keeps_its_checkpoint(p, tmp_path, capsys,
                                                                    recwarn):
    out = tmp_path / "nan"
    capsys.readouterr()
    assert main(["train", p.corpus, "--out", str(out), *DIVERGE]) == 1
    stdout, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "Warning" not in err, err
    assert _runtime_warnings(recwarn) == []
    assert lines[0].startswith("rnnkit train: error: non-finite loss or gradients at step ")
    assert "the last good checkpoint" in lines[0] and "--on-nonfinite skip" in lines[0]
    arrays, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert 1 <= meta["step"] < 40
    assert all(np.isfinite(v).all() for k, v in arrays.items() if v.dtype.kind == "f")
    # A resume meets the same fault and says so again, without touching the checkpoint.
    before = (out / "checkpoint.safetensors").read_bytes()
    assert main(["train", p.corpus, "--out", str(out), *DIVERGE, "--resume"]) == 1
    assert "non-finite" in capsys.readouterr().err
    assert (out / "checkpoint.safetensors").read_bytes() == before


def test_diverging_run_with_skip_finishes_and_says_so(p, tmp_path, capsys, recwarn):
    out = tmp_path / "skip"
    capsys.readouterr()
    assert main(["train", p.corpus, "--out", str(out), *DIVERGE, "--on-nonfinite", "skip"]) == 0
    stdout, err = capsys.readouterr()
    assert "Traceback" not in err and "Warning" not in err
    assert _runtime_warnings(recwarn) == []
    assert "skipped for a NaN/Inf loss or gradient" in stdout
    arrays, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["step"] == 40 and meta["skipped"] > 0
    assert all(np.isfinite(v).all() for k, v in arrays.items() if v.dtype.kind == "f")
