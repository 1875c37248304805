"""``mpiexec -n K rnnkit score DIR --file FILE``: the lines split over K ranks, rank 0 prints
the results in input order — the very output of one process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.lm.train import Trainer, TrainOptions

BIN = Path(sys.executable).parent
MPIEXEC = BIN / "mpiexec"
pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec of the mpich wheel "
                                "(pip install 'rnnkit[mpi]') is not installed")
TEXT = "".join(f"the {a} {v} on the {b}.\n" for a in ("cat", "dog", "bird")
               for v in ("sat", "ran", "slept") for b in ("mat", "rug", "sofa")) * 3
LINES = ["the cat sat.", "the dog ran on the mat.", "", "the bird", "zzz qq",
         "the cat slept on the rug.", "the"]


def run(argv, k=None):
    env = {k_: v for k_, v in os.environ.items() if not k_.startswith(("PMI_", "OMPI_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1")
    cmd = ([str(MPIEXEC), "-n", str(k)] if k else []) + [str(BIN / "rnnkit"), *map(str, argv)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    (d / "corpus.txt").write_text(TEXT, encoding="utf-8")
    Trainer(TrainOptions(out=str(d / "lm"), corpus=[str(d / "corpus.txt")], layers=1, hidden=8,
                         embed=4, seq_len=8, batch=4, steps=4), stream=open(os.devnull, "w")).run()
    (d / "lines.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return d


@pytest.mark.parametrize("k, fmt", [(2, "--json"), (3, None)])
def test_split_over_ranks_prints_what_one_process_prints(k, fmt, model):
    argv = ["score", model / "lm", "--file", model / "lines.txt", "--batch", "2"]
    argv += [fmt] if fmt else []
    one, many = run(argv), run(argv, k)
    assert one.returncode == 0 and many.returncode == 0, many.stderr[-2000:]
    assert many.stdout == one.stdout and many.stderr == ""
    if fmt:
        assert many.stdout.count('"text"') == len(LINES)
    else:
        assert [ln.split("\t")[0] for ln in many.stdout.splitlines()[::2]] == LINES


def test_a_missing_file_is_one_line_from_rank_0(model):
    r = run(["score", model / "lm", "--file", model / "nope.txt"], 2)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "nope.txt" in r.stderr
