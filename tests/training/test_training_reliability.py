"""What training must survive, for the language model and every task trainer alike:

- SIGTERM (``timeout``, ``kill``, Slurm, ``docker stop``) is Ctrl-C: the state is saved, one
  line is printed, the exit status is 143, and ``--resume`` goes on;
- one run per ``--out``: a lock file with the holder's pid, released at the end, taken over
  from a dead holder, a second run refused in one line;
- the user's own files (``metrics.jsonl``, ``loss.png``) are not replaced without ``--force``;
  ``--out ""`` is refused; ``--force`` that starts over discards the old training state;
- one meaning everywhere: ``--resume --force`` refused, ``--resume --steps`` below the saved
  step refused, ``--clip 0`` is "off", "the last good checkpoint is kept" only when one is;
- nonsense refused before training: a non-UTF-8 or unwritable ``--out``, a ``--min-count``
  that leaves no token, a classifier whose data has a single label.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli import main
from rnnkit.lm.train import Trainer, TrainOptions
from rnnkit.models import Seq2Seq, SequenceClassifier, SequenceTagger
from rnnkit.models.language_model import LanguageModel
from rnnkit.training.rundir import LOCK_FILE

TEXT = "".join(f"the {a} {v} on the {b}.\n" for a in ("cat", "dog", "bird")
               for v in ("sat", "ran", "slept") for b in ("mat", "rug", "sofa", "floor")) * 4
LM = ["--layers", "1", "--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch", "4",
      "--eval-every", "3", "--log-every", "3", "--checkpoint-every", "3"]
TASK = ["--hidden", "8", "--embed", "4", "--batch", "4", "--eval-every", "3",
        "--checkpoint-every", "3", "--quiet"]
TASKS = ("classify", "tag", "seq2seq")
MODEL_CLASS = {"classify": SequenceClassifier, "tag": SequenceTagger, "seq2seq": Seq2Seq}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    paths = {"corpus": d / "corpus.txt"}
    paths["corpus"].write_text(TEXT, encoding="utf-8")
    rows = {"classify": [f"{w}\t{'A' if w[0] == 'a' else 'B'}" for w in
                         ("ab", "ba", "abc", "cab", "aa", "bb", "ac", "ca")],
            "tag": ["the cat\tD N", "a dog runs\tD N V", "the dog\tD N", "a cat runs\tD N V"],
            "seq2seq": [f"{w}\t{w[::-1]}" for w in ("ab", "bca", "cab", "a", "bb", "abc")]}
    for task, lines in rows.items():
        paths[task] = d / f"{task}.tsv"
        paths[task].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def lm_argv(data, out, *extra, steps=6):
    return ["train", str(data["corpus"]), "--out", str(out), *LM, "--steps", str(steps), *extra]


def task_argv(task, data, out, *extra, steps=6):
    return [task, "train", str(data[task]), "--out", str(out), *TASK, "--steps", str(steps),
            *extra]


def argv_of(kind, data, out, *extra, steps=6):
    return lm_argv(data, out, *extra, steps=steps) if kind == "lm" else \
        task_argv(kind, data, out, *extra, steps=steps)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _signal_at(monkeypatch, kind, at, sig=signal.SIGTERM):
    """The training step ``at`` (1-based) of ``kind``'s model receives a real signal."""
    cls = LanguageModel if kind == "lm" else MODEL_CLASS[kind]
    name = "loss_and_grads" if kind == "lm" else "batch_loss"
    real = getattr(cls, name)
    calls = {"n": 0}

    def hooked(self, *a, **kw):
        result = real(self, *a, **kw)
        if kw.get("training", True) and kw.get("rng") is not None or kind == "lm":
            calls["n"] += 1
            if calls["n"] == at:
                signal.raise_signal(sig)
        return result

    monkeypatch.setattr(cls, name, hooked)


# --------------------------------------------------------------------------- SIGTERM

@pytest.mark.parametrize("kind", ["lm", *TASKS])
def test_sigterm_saves_says_one_line_and_exits_143(kind, data, tmp_path, monkeypatch, capsys):
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main(argv_of(kind, data, ref)) == 0
    _signal_at(monkeypatch, kind, 4)
    capsys.readouterr()
    assert main(argv_of(kind, data, out)) == 143
    stdout, err = capsys.readouterr()
    assert "interrupted; resume with --resume" in one_line(stdout) and "Traceback" not in err
    assert load_checkpoint(out / "checkpoint.safetensors")[1]["step"] == 4
    assert not (out / LOCK_FILE).exists()  # released on the way out
    monkeypatch.undo()
    assert main(argv_of(kind, data, out, "--resume")) == 0
    a, _ = load_checkpoint(ref / "checkpoint.safetensors")
    b, _ = load_checkpoint(out / "checkpoint.safetensors")
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_sigterm_from_outside_and_a_second_run_refused_while_the_first_runs(data, tmp_path):
    """A real process: while it trains, a second run into its directory is refused (the lock
    names its pid); then ``kill -TERM`` saves its state and it exits 143."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "rnnkit.cli", *lm_argv(data, out, steps=100000),
            "--eval-every", "100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        t0 = time.monotonic()
        while not (out / "checkpoint.safetensors").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() - t0 < 60
            time.sleep(0.1)
        assert (out / LOCK_FILE).read_text().split()[0] == str(proc.pid)
        second = subprocess.run([sys.executable, "-m", "rnnkit.cli",
                                 *lm_argv(data, out, "--force")], env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"another rnnkit run (pid {proc.pid}) is training into it" in \
            one_line(second.stderr)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "interrupted; resume with --resume" in stdout
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["step"] >= 3 and not (out / LOCK_FILE).exists()


# --------------------------------------------------------------------------- the lock

@pytest.mark.parametrize("kind", ["lm", "tag"])
def test_a_live_lock_refuses_and_a_dead_one_is_taken_over(kind, data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(f"{holder.pid} {os.uname().nodename}\n")
        capsys.readouterr()
        assert main(argv_of(kind, data, out)) == 2
        assert f"another rnnkit run (pid {holder.pid})" in one_line(capsys.readouterr().err)
        assert not (out / "checkpoint.safetensors").exists()
    finally:
        holder.kill()
        holder.wait()
    # Its holder is dead now (a SIGKILLed run leaves its lock behind): taken over.
    assert main(argv_of(kind, data, out)) == 0
    assert not (out / LOCK_FILE).exists()


# --------------------------------------------------------------------------- the user's files

@pytest.mark.parametrize("kind, name", [("lm", "metrics.jsonl"), ("lm", "loss.png"),
                                        ("classify", "metrics.jsonl")])
def test_the_users_files_are_not_replaced_without_force(kind, name, data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(b"my own notes\n")
    capsys.readouterr()
    assert main(argv_of(kind, data, out)) == 2
    line = one_line(capsys.readouterr().err)
    assert f"holds {name}, which training would overwrite" in line and "--force" in line
    assert (out / name).read_bytes() == b"my own notes\n"
    assert main(argv_of(kind, data, out, "--force")) == 0
    assert (out / name).read_bytes() != b"my own notes\n"


@pytest.mark.parametrize("kind", ["lm", *TASKS])
def test_empty_out_is_refused(kind, data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = argv_of(kind, data, "x")
    argv[argv.index("--out") + 1] = ""
    capsys.readouterr()
    assert main(argv) == 2
    assert "--out must name a directory" in one_line(capsys.readouterr().err)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_force_discards_the_old_training_state(kind, data, tmp_path, capsys):
    """--force, then a crash before the first checkpoint: --resume must not revive the
    discarded run (and overwrite the newer model)."""
    out = tmp_path / "run"
    assert main(argv_of(kind, data, out)) == 0
    capsys.readouterr()
    assert main(argv_of(kind, data, out, "--force", "--lr", "1e38")) == 1
    line = one_line(capsys.readouterr().err)
    assert "before the first checkpoint was written" in line and "last good" not in line
    assert not (out / "checkpoint.safetensors").exists()
    assert main(argv_of(kind, data, out, "--resume")) == 2
    assert "--resume: no checkpoint.safetensors" in one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- one meaning

@pytest.mark.parametrize("kind", ["lm", *TASKS])
def test_resume_with_force_is_refused(kind, data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(argv_of(kind, data, out)) == 0
    before = (out / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert main(argv_of(kind, data, out, "--resume", "--force")) == 2
    assert "--resume and --force contradict each other" in one_line(capsys.readouterr().err)
    assert (out / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize("kind", ["lm", "classify"])
def test_resume_below_the_saved_step_is_refused_alike(kind, data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(argv_of(kind, data, out, steps=6)) == 0
    capsys.readouterr()
    assert main(argv_of(kind, data, out, "--resume", steps=4)) == 2
    line = one_line(capsys.readouterr().err)
    assert "the checkpoint is at step 6, past the 4 steps asked for (give --steps 6 or more)" \
        in line
    assert main(argv_of(kind, data, out, "--resume", steps=6)) == 0  # nothing left to do


@pytest.mark.parametrize("kind", ["lm", "tag"])
def test_clip_zero_is_off_for_every_trainer(kind, data, tmp_path):
    """--clip 0 trains exactly like a bound no gradient reaches."""
    assert main(argv_of(kind, data, tmp_path / "off", "--clip", "0", "--lr", "0.1")) == 0
    assert main(argv_of(kind, data, tmp_path / "huge", "--clip", "1e30", "--lr", "0.1")) == 0
    assert main(argv_of(kind, data, tmp_path / "tight", "--clip", "0.01", "--lr", "0.1")) == 0
    a, _ = load_checkpoint(tmp_path / "off" / "checkpoint.safetensors")
    b, _ = load_checkpoint(tmp_path / "huge" / "checkpoint.safetensors")
    c, _ = load_checkpoint(tmp_path / "tight" / "checkpoint.safetensors")
    params = [k for k in a if k.startswith("param/")]
    assert all(np.array_equal(a[k], b[k]) for k in params)
    assert not all(np.array_equal(a[k], c[k]) for k in params)  # clipping does act


@pytest.mark.parametrize("kind", ["lm", "classify"])
def test_negative_clip_is_one_line(kind, data, tmp_path, capsys):
    capsys.readouterr()
    assert main(argv_of(kind, data, tmp_path / "r", "--clip", "-1")) == 2
    assert "clip must be >= 0" in one_line(capsys.readouterr().err)


def test_the_kept_checkpoint_is_named_only_when_there_is_one(data, tmp_path, capsys):
    capsys.readouterr()
    assert main(lm_argv(data, tmp_path / "r", "--lr", "1e308")) == 1
    line = one_line(capsys.readouterr().err)
    assert "before the first checkpoint was written" in line and "is kept" not in line


# --------------------------------------------------------------------------- nonsense

def test_non_utf8_out_is_refused_before_training(data, tmp_path):
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/run\xff")
    opts = TrainOptions(out=out, corpus=[str(data["corpus"])], layers=1, hidden=8, embed=4,
                        seq_len=8, batch=4, steps=3)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        Trainer(opts).run()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["lm", "tag"])
def test_unwritable_out_is_refused_before_training(kind, data, tmp_path, capsys):
    # Under a regular file: no directory can be made there, whoever runs the test (root
    # writes into read-only directories, so a chmod would not do).
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    capsys.readouterr()
    assert main(argv_of(kind, data, blocker / "run")) == 2
    assert "cannot write there" in one_line(capsys.readouterr().err)
    assert blocker.read_text() == "not a directory\n"


def test_min_count_that_leaves_no_token_is_refused(data, tmp_path, capsys):
    capsys.readouterr()
    code = main(lm_argv(data, tmp_path / "r", "--level", "word", "--min-count", "100000"))
    assert code == 2
    assert "--min-count 100000 leaves no token in the vocabulary" in \
        one_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_a_single_label_classifier_is_refused(tmp_path, capsys):
    tsv = tmp_path / "one.tsv"
    tsv.write_text("good\tpos\nfine\tpos\ngreat\tpos\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["classify", "train", str(tsv), "--out", str(tmp_path / "r"), *TASK]) == 2
    assert "a classifier needs at least two labels" in one_line(capsys.readouterr().err)


def test_train_help_shows_defaults_and_choices(capsys):
    for argv in (["train", "--help"], ["seq2seq", "train", "--help"]):
        with pytest.raises(SystemExit):
            from rnnkit.cli import build_parser
            build_parser().parse_args(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: 5.0)" in text and "adam|sgd" in text and "stop|skip" in text
        assert "--optimizer" in text and "--clip" in text and "(0: off)" in text


def test_path_of_this_file():  # the lock file's name is what the README promises
    assert LOCK_FILE == ".rnnkit.lock" and Path(__file__).exists()


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_out_the_system_will_not_let_us_write_is_refused(kind, data, tmp_path, monkeypatch,
                                                          capsys):
    """The same refusal whoever runs the tests (root writes through chmod): the directory is
    one ``os.access`` says cannot be written, as on a read-only mount."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path
                        else real(p, mode, **kw))
    capsys.readouterr()
    assert main(argv_of(kind, data, tmp_path / "run")) == 2
    assert "cannot write there" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()
