"""Exit codes: every command family, run with stdout closed, with stdout failing,
with a device file as input and with an extreme value, answers with one line on stderr, no
traceback, and the exit code of the README's table (2 the user's mistake, 1 a failure while
running); and that table itself, over the error classes, through ``rnnkit.cli.main``.

Most cases run in process (``main`` is what the ``rnnkit`` script calls; a closed stdout is
``sys.stdout is None``, which is what Python makes of a closed file descriptor 1); two run
the real command with ``>&-``.
"""

import errno
import os
import resource
import subprocess
import sys
from types import SimpleNamespace

import pytest

from rnnkit.cli import main

TEXT = "".join(f"the {a} {v} on the {b}.\n" for a in ("cat", "dog", "bird")
               for v in ("sat", "ran") for b in ("mat", "rug", "sofa")) * 6
LM = ["--layers", "1", "--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch", "4",
      "--steps", "2", "--eval-every", "2"]
TASK = ["--hidden", "8", "--embed", "4", "--steps", "2", "--batch", "4", "--quiet"]
DATA = {"classify": "good film\tpos\nbad film\tneg\ngreat\tpos\nawful\tneg\n",
        "tag": "the cat\tD N\na dog runs\tD N V\n",
        "seq2seq": "abc\tcba\nxy\tyx\n"}
TASKS = tuple(DATA)


@pytest.fixture(scope="module")
def p(tmp_path_factory):
    d = tmp_path_factory.mktemp("exit_codes")
    (d / "corpus.txt").write_text(TEXT)
    assert main(["train", str(d / "corpus.txt"), "--out", str(d / "lm"), *LM, "--json"]) == 0
    paths = {"corpus": d / "corpus.txt", "lm": d / "lm", "dir": d,
             "zero_model": d / "zero.safetensors"}
    os.symlink("/dev/zero", paths["zero_model"])  # a model "file" that never ends
    paths["zero_dir"] = d / "zero_dir"  # a model directory whose model file is that
    paths["zero_dir"].mkdir()
    os.symlink("/dev/zero", paths["zero_dir"] / "model.safetensors")
    for task, data in DATA.items():
        (d / f"{task}.tsv").write_text(data)
        (d / f"{task}.in").write_text("".join(line.split("\t")[0] + "\n"
                                              for line in data.splitlines()))
        paths[f"{task}_data"], paths[f"{task}_in"] = d / f"{task}.tsv", d / f"{task}.in"
        paths[task] = d / task
        assert main([task, "train", str(d / f"{task}.tsv"), "--out", str(d / task), *TASK]) == 0
    return SimpleNamespace(**{k: str(v) for k, v in paths.items()})


def _out(tmp_path):
    return str(tmp_path / "out")


# Each family: argv that succeeds, from (paths, fresh --out dir).
FAMILIES = {
    "train": lambda p, o: ["train", p.corpus, "--out", o, *LM],
    "eval": lambda p, o: ["eval", p.lm, p.corpus],
    "score": lambda p, o: ["score", p.lm, "the cat sat"],
    "sample": lambda p, o: ["sample", p.lm, "--length", "5", "--seed", "1"],
    **{f"{t} train": (lambda t: lambda p, o: [t, "train", getattr(p, f"{t}_data"), "--out", o,
                                              *TASK])(t) for t in TASKS},
    **{f"{t} predict": (lambda t: lambda p, o: [t, "predict", getattr(p, t),
                                                getattr(p, f"{t}_in")])(t) for t in TASKS},
}

# The same families with a device where a file goes.
DEVICE = {
    "train": (lambda p, o: ["train", "/dev/zero", "--out", o, *LM], "/dev/zero"),
    "train --val": (lambda p, o: ["train", p.corpus, "--val", "/dev/urandom", "--out", o, *LM],
                    "/dev/urandom"),
    "eval": (lambda p, o: ["eval", p.lm, "/dev/urandom"], "/dev/urandom"),
    "eval model": (lambda p, o: ["eval", p.zero_model, p.corpus], "zero.safetensors"),
    "score": (lambda p, o: ["score", p.zero_model, "the cat"], "zero.safetensors"),
    "sample": (lambda p, o: ["sample", p.zero_model, "--length", "5"], "zero.safetensors"),
    **{f"{t} train": ((lambda t: lambda p, o: [t, "train", "/dev/zero", "--out", o, *TASK])(t),
                      "/dev/zero") for t in TASKS},
    **{f"{t} predict": ((lambda t: lambda p, o: [t, "predict", getattr(p, t), "/dev/zero"])(t),
                        "/dev/zero") for t in TASKS},
    **{f"{t} predict model": ((lambda t: lambda p, o: [t, "predict", p.zero_model,
                                                       getattr(p, f"{t}_in")])(t),
                              "zero.safetensors") for t in TASKS},
}

# An extreme value per family: (argv, exit code, what the one line says (None: no error)).
HUGE = str(10 ** 12)
EXTREME = {
    "train": (lambda p, o: ["train", p.corpus, "--out", o, *LM, "--hidden", "1000000"], 2,
              "--hidden 1000000: a model of this size needs at least"),
    "train --batch": (lambda p, o: ["train", p.corpus, "--out", o, *LM, "--batch", HUGE], 2,
                      f"--batch {HUGE}"),
    "eval": (lambda p, o: ["eval", p.lm, p.corpus, "--streams", HUGE], 0, None),
    "score": (lambda p, o: ["score", p.lm, "the cat " * 5000], 0, None),
    "sample": (lambda p, o: ["sample", p.lm, "--num", HUGE], 2, f"--num {HUGE}: this many"),
    **{f"{t} train": ((lambda t: lambda p, o: [t, "train", getattr(p, f"{t}_data"), "--out", o,
                                               *TASK, "--hidden", "1000000"])(t), 2,
                      "--hidden 1000000: a model of this size") for t in TASKS},
    **{f"{t} predict": ((lambda t: lambda p, o: [t, "predict", getattr(p, t),
                                                 getattr(p, f"{t}_in"), "--batch", HUGE])(t),
                        0, None) for t in TASKS},
}


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    # Progress lines and the thread plan that a training run prints at its start are not
    # messages about the failure.
    lines = [ln for ln in err.strip().splitlines()
             if not ln.startswith(("step ", "thread plan: "))]
    assert len(lines) == 1, err
    return lines[0]


def test_the_table_covers_every_family():
    families = set(FAMILIES)
    assert families == {f.split(" --")[0].replace(" model", "") for f in DEVICE}
    assert families == {f.split(" --")[0] for f in EXTREME}


@pytest.mark.parametrize("family", FAMILIES)
def test_stdout_closed(family, p, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)  # what Python makes of `rnnkit ... >&-`
    code = main(FAMILIES[family](p, _out(tmp_path)))
    err = capsys.readouterr().err
    assert code == 2
    assert _one_line(err).endswith("error: standard output is closed; redirect it to a file "
                                   "(or to /dev/null to discard it)")
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("family", FAMILIES)
def test_stdout_failing(family, p, tmp_path, capsys, monkeypatch):
    full = open("/dev/full", "w")  # every write: ENOSPC, like a full disk
    monkeypatch.setattr(sys, "stdout", full)
    try:
        code = main(FAMILIES[family](p, _out(tmp_path)))
    finally:
        monkeypatch.undo()
        full.close()  # what it still buffers goes to /dev/null: main pointed its fd there
    err = capsys.readouterr().err
    assert code == 1
    assert _one_line(err).endswith("error: cannot write to standard output "
                                   "(No space left on device)")


@pytest.mark.parametrize("family", FAMILIES)
def test_families_succeed_with_working_stdout(family, p, tmp_path, capsys):
    # The baseline of the tables above: the same argv works when nothing is wrong.
    assert main(FAMILIES[family](p, _out(tmp_path))) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and out.strip()  # each family reports on stdout


@pytest.mark.parametrize("family", DEVICE)
def test_device_as_input(family, p, tmp_path, capsys):
    argv, name = DEVICE[family]
    code = main(argv(p, _out(tmp_path)))
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert name in line and "is a device, not a regular file" in line, line


@pytest.mark.parametrize("family", EXTREME)
def test_extreme_value(family, p, tmp_path, capsys):
    argv, want, says = EXTREME[family]
    code = main(argv(p, _out(tmp_path)))
    out, err = capsys.readouterr()
    assert code == want, err
    if says is None:
        assert "Traceback" not in err and out.strip()
    else:
        assert says in _one_line(err)


@pytest.mark.parametrize("argv", [["score", "{lm}", "the cat"],
                                  ["classify", "predict", "{classify}", "{classify_in}"]])
def test_real_closed_stdout(argv, p):
    # The two cases, as a user runs them: a real process with file descriptor 1 closed.
    args = [a.format(**vars(p)) for a in argv]
    r = subprocess.run([sys.executable, "-m", "rnnkit.cli", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 2, r.stderr
    assert "standard output is closed" in _one_line(r.stderr)


# ---- the exit-code table, error class by error class -----------------------------------

def _raiser(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


TABLE = [
    # (error class, exception a command raises, exit code, the one line ends with)
    ("bad value", ValueError("--hidden must be >= 1, got 0"), 2, "--hidden must be >= 1, got 0"),
    ("bad type", TypeError("text must be a str"), 2, "text must be a str"),
    ("missing file", FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/c.txt"), 2,
     "/x/c.txt: No such file or directory"),
    ("permission", PermissionError(errno.EACCES, "Permission denied", "/x/out"), 2,
     "/x/out: Permission denied"),
    ("disk full", OSError(errno.ENOSPC, "No space left on device", "/x/out/model.safetensors"), 1,
     "/x/out/model.safetensors: No space left on device"),
    ("read-only", OSError(errno.EROFS, "Read-only file system", "/x/out"), 1,
     "/x/out: Read-only file system"),
    ("file too large", OSError(errno.EFBIG, "File too large", "/x/out/metrics.jsonl"), 1,
     "/x/out/metrics.jsonl: File too large"),
    ("i/o error", OSError(errno.EIO, "Input/output error", "/x/c.txt"), 1,
     "/x/c.txt: Input/output error"),
    ("out of memory", MemoryError("Unable to allocate 8 GiB"), 1,
     "out of memory (Unable to allocate 8 GiB); try smaller sizes or free memory"),
    ("internal error", RuntimeError("boom"), 1,
     "internal error: RuntimeError: boom (please report it; RNNKIT_TRACEBACK=1 shows where)"),
    ("ctrl-c", KeyboardInterrupt(), 130, "rnnkit: interrupted"),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cls,exc,code,says", TABLE, ids=[t[0] for t in TABLE])
def test_exit_code_table(family, cls, exc, code, says, monkeypatch, capsys, p, tmp_path):
    # The error is raised where every command's work starts (the size check main runs first),
    # so the table is main's, the same for every family.
    import rnnkit._limits

    monkeypatch.setattr(rnnkit._limits, "check_memory_need", _raiser(exc))
    monkeypatch.delenv("RNNKIT_TRACEBACK", raising=False)
    assert main(FAMILIES[family](p, _out(tmp_path))) == code
    line = _one_line(capsys.readouterr().err)
    assert line.endswith(says), line
    assert line.startswith(f"rnnkit {family.split()[0]}") or cls == "ctrl-c"


def test_real_full_disk_is_exit_1_naming_the_file(p, tmp_path, capsys):
    # A file-size limit makes every write past it fail with EFBIG, as a full disk fails with
    # ENOSPC (Python ignores SIGXFSZ): a real failure while running, from a real write.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    out = tmp_path / "out"
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, hard))
    try:
        code = main(["train", p.corpus, "--out", str(out), *LM])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    assert "File too large" in line and str(out) in line and "[Errno" not in line, line


def test_non_utf8_name_refused_before_training(p, tmp_path, capsys):
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/out\xff")  # bytes a file system allows
    assert main(["train", p.corpus, "--out", out, *LM]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("rnnkit train: error: --out ") and "not valid UTF-8" in line
    assert list(tmp_path.iterdir()) == []


def test_stderr_closed_keeps_stdout_clean_and_the_exit_code(p, tmp_path):
    # With fd 2 closed (`2>&-`) the progress lines must not fall into stdout, files opened
    # later must not become "stderr", and the exit code still tells what happened.
    def run(*args):
        return subprocess.run([sys.executable, "-m", "rnnkit.cli", *args], capture_output=True,
                              text=True, timeout=120, preexec_fn=lambda: os.close(2))

    out = tmp_path / "out"
    r = run("train", p.corpus, "--out", str(out), *LM)
    assert r.returncode == 0
    assert r.stdout.startswith("done: step 2,") and len(r.stdout.splitlines()) == 1
    assert main(["score", str(out), "the cat"]) == 0  # the model it wrote is whole
    assert run("train", "/dev/zero", "--out", str(tmp_path / "x")).returncode == 2


# The commands added beside the seven families: the same two refusals, from main.
OTHER = {
    "explain": (lambda p, o: ["explain", p.lm, "the cat", "--html", o + ".html"],
                lambda p, o: ["explain", p.lm, "--file", "/dev/zero", "--html", o + ".html"]),
    "gradflow": (lambda p, o: ["gradflow", p.lm, "--out", o],
                 lambda p, o: ["gradflow", p.zero_model, "--out", o]),
    "ngram train": (lambda p, o: ["ngram", "train", p.corpus, "--out", o + ".arpa"],
                    lambda p, o: ["ngram", "train", "/dev/zero", "--out", o + ".arpa"]),
    "ngram eval": (lambda p, o: ["ngram", "eval", o + ".arpa", p.corpus],
                   lambda p, o: ["ngram", "eval", "/dev/zero", p.corpus]),
    "export": (lambda p, o: ["export", p.lm, o], lambda p, o: ["export", p.zero_dir, o]),
}


@pytest.mark.parametrize("command", OTHER)
def test_other_commands_stdout_closed_and_device(command, p, tmp_path, capsys, monkeypatch):
    ok, device = OTHER[command]
    with monkeypatch.context() as m:
        m.setattr(sys, "stdout", None)
        assert main(ok(p, _out(tmp_path))) == 2
    assert "standard output is closed" in _one_line(capsys.readouterr().err)
    assert main(device(p, _out(tmp_path))) == 2
    line = _one_line(capsys.readouterr().err)
    # export looks for a regular model.safetensors first and says there is none
    says = "no model.safetensors" if command == "export" else "is a device, not a regular file"
    assert says in line and "zero" in line, line


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["train", "--help"], []])
def test_help_and_version_with_nowhere_to_write(argv, capsys, monkeypatch):
    # argparse itself would swallow the failed write and exit 0 (or print help on stderr).
    with monkeypatch.context() as m:
        m.setattr(sys, "stdout", None)
        assert main(argv) == 2
    assert "standard output is closed" in _one_line(capsys.readouterr().err)
    full = open("/dev/full", "w", buffering=1)  # line-buffered: the write itself fails
    try:
        with monkeypatch.context() as m:
            m.setattr(sys, "stdout", full)
            code = main(argv)
    finally:
        full.close()
    err = capsys.readouterr().err
    assert code == 1 and _one_line(err).endswith("cannot write to standard output "
                                                 "(No space left on device)")


def test_python_dash_m_rnnkit_is_the_command(tmp_path):
    """``python -m rnnkit`` answers as the ``rnnkit`` script: its version, and the same exit
    code 2 and one-line message for a user's mistake."""
    from rnnkit import __version__

    ok = subprocess.run([sys.executable, "-m", "rnnkit", "--version"], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and __version__ in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "rnnkit", "eval", str(tmp_path / "nothing"),
                          str(tmp_path / "none.txt")], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
