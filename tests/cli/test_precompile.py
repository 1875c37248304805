"""Ahead-of-time compilation (python -m rnnkit.precompile, run by the README's set-up): on an
empty Numba cache it compiles what the default commands use, so a following ``rnnkit train``
on the built-in corpus and ``rnnkit sample`` compile nothing (the cache is left untouched)
and find the built-in corpus already built."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit import precompile as pc

pytest.importorskip("numba")


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in d.rglob("*") if p.is_file()}


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "rnnkit.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_precompile_leaves_nothing_for_the_first_run(tmp_path):
    numba_cache, corpus_cache = tmp_path / "numba", tmp_path / "corpus"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(numba_cache),
           "RNNKIT_CACHE_DIR": str(corpus_cache)}
    r = subprocess.run([sys.executable, "-m", "rnnkit.precompile"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("rnnkit precompile: bytecode of rnnkit's modules:")
    assert lines[1].startswith("rnnkit precompile: built-in corpus ready in")
    assert lines[2].startswith("rnnkit precompile: lstm: compiled")
    assert lines[-1].startswith("rnnkit precompile: done in")
    assert len(list(corpus_cache.glob("default-corpus-*.json"))) == 1
    before = _snapshot(numba_cache)
    assert any(name.endswith(".nbi") for name in before)  # compiled code is in the cache

    out = tmp_path / "model"
    r = _cli("train", "--out", str(out), "--steps", "2", "--eval-every", "2", env=env)
    assert r.returncode == 0, r.stderr
    r = _cli("sample", str(out), "--length", "30", "--seed", "1", env=env)  # the NumPy path
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > 0
    # a job long enough for the compiled sampling loop
    from rnnkit.cli_lm import SHORT_JOB_TOKENS

    r = _cli("sample", str(out), "--length", str(SHORT_JOB_TOKENS + 1), "--no-stop", env=env)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > SHORT_JOB_TOKENS
    # nothing compiled, nothing re-parsed: no cache file written or rewritten
    assert _snapshot(numba_cache) == before
    assert len(list(corpus_cache.glob("default-corpus-*.json"))) == 1


def test_bytecode_written_once_and_used(tmp_path):
    """write_bytecode leaves a .pyc that import uses beside every module (so a process with
    PYTHONDONTWRITEBYTECODE set does not compile rnnkit from source at every start); a
    second call writes nothing; a module changed since is written again."""
    pc.write_bytecode()
    modules = list(Path(pc.__file__).resolve().parent.rglob("*.py"))
    assert len(modules) > 50 and all(pc.bytecode_current(f) for f in modules)
    assert pc.write_bytecode() == 0

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("x = 1\n")
    assert not pc.bytecode_current(pkg / "m.py")
    assert pc.write_bytecode(pkg) == 2
    assert pc.write_bytecode(pkg) == 0
    (pkg / "m.py").write_text("x = 22\n")  # another size: stale whatever the clock says
    assert not pc.bytecode_current(pkg / "m.py")
    assert pc.write_bytecode(pkg) == 1
    r = subprocess.run([sys.executable, "-v", "-c", "import pkg.m as m; print(m.x, m.__cached__)"],
                       cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    x, cached = r.stdout.split()
    assert x == "22"
    assert f"code object from '{cached}'" in r.stderr  # loaded from the .pyc, not compiled


def test_precompile_rejects_unknown_cells(capsys):
    with pytest.raises(ValueError, match="cells must be some of lstm, gru, rnn, got transformer"):
        pc.precompile(("transformer",))
    with pytest.raises(ValueError, match="got none"):
        pc.precompile(())
    assert pc.main(["--cells", "lstm,transformer"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rnnkit precompile: error: cells must be some of lstm, gru, rnn, "
                   "got lstm,transformer"]
