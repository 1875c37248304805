"""Data-parallel training over MPI (``mpiexec -n 2``), against one process.

- K=2 ranks train the model one process trains with the same global batch: language model
  (stateful streams) and seq2seq (padded batches, a batch of 7 split 4 + 3, dropout on),
  to 1e-10 in float64 and 1e-5 in float32; both ranks end with identical weights;
- the CLI under mpiexec: rank 0 alone writes and speaks, the checkpoint records K, resume
  under MPI is bit-identical to a run never interrupted, another K is refused in one line;
- Ctrl-C or SIGTERM at the launcher saves and stops every rank (130 / 143); a killed rank
  ends the job with a non-zero status within 30 s and the last checkpoint is intact;
- without a launcher nothing imports mpi4py; under one without mpi4py, one line says what
  to install.
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

BIN = Path(sys.executable).parent
MPIEXEC = BIN / "mpiexec"
WORKER = Path(__file__).resolve().parents[1] / "_mpi_worker.py"
pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec of the mpich wheel "
                                "(pip install 'rnnkit[mpi]') is not installed")

TEXT = "".join(f"the {a} {v} on the {b}.\n" for a in ("cat", "dog", "bird")
               for v in ("sat", "ran", "slept") for b in ("mat", "rug", "sofa", "floor")) * 4
LM = ["--cell", "gru", "--layers", "2", "--hidden", "10", "--embed", "6", "--seq-len", "6",
      "--batch", "4", "--lr", "0.01", "--dropout", "0.1", "--seed", "7", "--eval-every", "4",
      "--log-every", "4", "--checkpoint-every", "4", "--dtype", "float64"]


def env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    e.update(PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}", OMP_NUM_THREADS="1",
             OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return e


def run(argv, k=None, timeout=120, **kw):
    cmd = ([str(MPIEXEC), "-n", str(k)] if k else []) + argv
    return subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout, **kw)


def rnnkit(*args):
    return [str(BIN / "rnnkit"), *map(str, args)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "train.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _weights(path):
    arrays, meta = load_checkpoint(path)
    return arrays, meta


@pytest.fixture(scope="module")
def worker_runs(tmp_path_factory):
    """The worker's four trainings, once in one process and once on 2 ranks."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    for k, d in ((None, one), (2, two)):
        r = run([sys.executable, str(WORKER), str(d), "9"], k)
        assert r.returncode == 0, r.stderr[-2000:]
    return one, two


@pytest.mark.parametrize("mode, dtype, tol", [("lm", "float64", 1e-10), ("lm", "float32", 1e-5),
                                              ("seq2seq", "float64", 1e-10),
                                              ("seq2seq", "float32", 1e-5)])
def test_two_ranks_train_the_one_process_model(mode, dtype, tol, worker_runs):
    one, two = (d / f"{mode}-{dtype}" for d in worker_runs)
    a = np.load(one / "rank0.npz")
    b0, b1 = np.load(two / "rank0.npz"), np.load(two / "rank1.npz")
    assert set(a.files) == set(b0.files) == set(b1.files)
    moved = False
    for name in a.files:
        assert a[name].dtype == np.dtype(dtype)
        scale = max(1.0, float(np.abs(a[name]).max()))
        assert float(np.abs(a[name] - b0[name]).max()) <= tol * scale, name
        assert np.array_equal(b0[name], b1[name]), f"ranks differ in {name}"
        moved = moved or not np.array_equal(a[name], b0[name])
    # The runs did train (9 steps from one seed) and the comparison is not of two copies of
    # the same file: the sum over ranks rounds differently somewhere.
    assert moved or dtype == "float32"


def _assert_same_state(a: Path, b: Path, tol=0.0):
    for name in ("checkpoint.safetensors", "model.safetensors"):
        xa, ma = _weights(a / name)
        xb, mb = _weights(b / name)
        assert set(xa) == set(xb), name
        for k in xa:
            if tol:
                assert float(np.abs(xa[k].astype(float) - xb[k]).max()) <= tol, (name, k)
            else:
                assert np.array_equal(xa[k], xb[k]), (name, k)


def test_lm_cli_under_mpi_resumes_bit_identically(corpus, tmp_path):
    one, full, part = tmp_path / "one", tmp_path / "full", tmp_path / "part"
    r1 = run(rnnkit("train", corpus, "--out", one, "--steps", 12, *LM))
    r = run(rnnkit("train", corpus, "--out", full, "--steps", 12, *LM), 2)
    assert r1.returncode == 0 and r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("done: step 12") == 1  # rank 0 alone speaks
    _, meta = _weights(full / "checkpoint.safetensors")
    assert meta["world_size"] == 2 and meta["step"] == 12
    _assert_same_state(one, full, tol=1e-10)  # the carried state of all streams included
    # Stopped at step 8, resumed under MPI: exactly the run never interrupted.
    assert run(rnnkit("train", corpus, "--out", part, "--steps", 8, *LM), 2).returncode == 0
    r = run(rnnkit("train", corpus, "--out", part, "--steps", 12, *LM, "--resume"), 2)
    assert r.returncode == 0, r.stderr[-2000:]
    _assert_same_state(full, part)
    # Another number of processes is refused in one line, the state untouched.
    before = (part / "checkpoint.safetensors").read_bytes()
    r = run(rnnkit("train", corpus, "--out", part, "--steps", 16, *LM, "--resume"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "trained on 2 process(es); resume it on as many (mpiexec -n 2)" in r.stderr
    assert (part / "checkpoint.safetensors").read_bytes() == before


def test_seq2seq_cli_under_mpi(tmp_path):
    import random

    rnd = random.Random(1)
    words = ["".join(rnd.choice("abc") for _ in range(rnd.randint(1, 6))) for _ in range(30)]
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{w}\t{w[::-1].upper()}\n" for w in words), encoding="utf-8")
    args = [data, "--hidden", 8, "--embed", 4, "--batch", 7, "--steps", 9, "--lr", 0.02,
            "--dropout", 0.2, "--bidirectional", "--checkpoint-every", 4, "--seed", 3, "--quiet"]
    r1 = run(rnnkit("seq2seq", "train", *args, "--out", tmp_path / "one"))
    r2 = run(rnnkit("seq2seq", "train", *args, "--out", tmp_path / "two"), 2)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr[-2000:]
    assert r2.stdout.count("saved ") == 1 and r2.stderr == ""
    # float32 sums in another order, through 9 Adam steps at lr 0.02: a coordinate whose
    # gradient is ~0 can move by up to lr a step on rounding alone, so the bound is 0.5% of
    # one step (1.2e-5 seen on an AMD CPU; a wrong average of the ranks' gradients is ~lr)
    _assert_same_state(tmp_path / "one", tmp_path / "two", tol=1e-4)


def _long_run(corpus, out, tag):
    argv = [str(MPIEXEC), "-n", "2", *rnnkit("train", corpus, "--out", out, "--hidden", 8,
                                             "--embed", 4, "--layers", 1, "--seq-len", 5,
                                             "--batch", 4, "--steps", 100000,
                                             "--eval-every", 100000, "--log-every", 10,
                                             "--checkpoint-every", 20)]
    return subprocess.Popen(argv, env=env(RNNKIT_TEST_TAG=tag), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc, limit=60):
    t0 = time.monotonic()
    while not (path.exists() and path.stat().st_size > 0):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() - t0 < limit, f"no {path.name} after {limit} s"
        time.sleep(0.1)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_at_the_launcher_saves_and_stops_every_rank(sig, code, corpus, tmp_path):
    out = tmp_path / "run"
    proc = _long_run(corpus, out, f"sig{sig}")
    _wait_for(out / "checkpoint.safetensors", proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr[-2000:]
    assert stdout.count("interrupted; resume with --resume") == 1
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["world_size"] == 2 and 20 <= meta["step"] < 100000


def _pid_of_rank(tag, rank):
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            environ = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RNNKIT_TEST_TAG={tag}".encode() in environ and f"PMI_RANK={rank}".encode() in environ:
            return int(d.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank via /proc")
def test_a_killed_rank_ends_the_job_and_the_checkpoint_is_intact(corpus, tmp_path):
    out = tmp_path / "run"
    tag = f"kill{os.getpid()}"
    proc = _long_run(corpus, out, tag)
    _wait_for(out / "checkpoint.safetensors", proc)
    pid = _pid_of_rank(tag, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the job did not end within 30 s of a rank's death")
    assert proc.returncode != 0 and time.monotonic() - t0 < 30
    arrays, meta = load_checkpoint(out / "checkpoint.safetensors")  # checksum verified
    assert meta["step"] >= 20 and meta["step"] % 20 == 0
    assert all(np.isfinite(v).all() for k, v in arrays.items() if k.startswith("param/"))


def test_batch_smaller_than_the_ranks_is_one_line(corpus, tmp_path):
    r = run(rnnkit("train", corpus, "--out", tmp_path / "r", "--batch", 1, "--steps", 2), 2)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "rnnkit train: error: --batch 1 is smaller than the 2 processes: each needs at least "
        "one stream"]
    assert not (tmp_path / "r").exists()


def test_one_process_never_imports_mpi4py(corpus, tmp_path):
    code = ("import sys\nfrom rnnkit.lm.train import Trainer, TrainOptions\n"
            f"Trainer(TrainOptions(out={str(tmp_path / 'r')!r}, corpus=[{str(corpus)!r}], "
            "hidden=4, embed=2, layers=1, seq_len=5, batch=2, steps=2), "
            "stream=open('/dev/null', 'w')).run()\nprint('mpi4py' in sys.modules)")
    r = run([sys.executable, "-c", code])
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr[-2000:]


def test_a_launcher_without_mpi4py_names_the_extra(corpus, tmp_path):
    fake = tmp_path / "fake"
    (fake / "mpi4py").mkdir(parents=True)
    (fake / "mpi4py" / "__init__.py").write_text("raise ImportError('no mpi4py here')\n")
    e = env(PMI_SIZE="2", PMI_RANK="0", PYTHONPATH=str(fake))
    r = subprocess.run(rnnkit("train", corpus, "--out", tmp_path / "r", "--steps", 2), env=e,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "rnnkit train: error: started by an MPI launcher, but mpi4py is not installed: "
        "pip install 'rnnkit[mpi]'"]


def test_sparse_embedding_gradients_under_mpi(corpus, tmp_path):
    """Word level with row-sparse embedding gradients: summed dense over the ranks, handed
    back to the optimizer as the rows some rank touched — the one-process (SparseAdam) run."""
    args = ["--level", "word", "--cell", "lstm", "--layers", 1, "--hidden", 8, "--embed", 4,
            "--seq-len", 5, "--batch", 4, "--steps", 8, "--lr", 0.01, "--eval-every", 4,
            "--checkpoint-every", 4, "--seed", 3, "--dtype", "float64", "--sparse-embedding"]
    r1 = run(rnnkit("train", corpus, "--out", tmp_path / "one", *args))
    r2 = run(rnnkit("train", corpus, "--out", tmp_path / "two", *args), 2)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr[-2000:]
    _assert_same_state(tmp_path / "one", tmp_path / "two", tol=1e-10)
