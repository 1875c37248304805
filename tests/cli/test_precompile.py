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


def _loaded_from_bytecode(cwd, module):
    """(modules imported from a .pyc, modules compiled from source) of the given top-level
    package, in a fresh interpreter that writes no bytecode (``python -v`` names the .pyc it
    loads; ``__cached__`` is where it would be)."""
    code = (f"import sys, {module}; "
            f"print('\\n'.join(m.__cached__ for n, m in list(sys.modules.items()) "
            f"if n.split('.')[0] == {module.split('.')[0]!r} and getattr(m, '__cached__', None)))")
    r = subprocess.run([sys.executable, "-v", "-c", code], cwd=cwd, capture_output=True,
                       text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    cached = r.stdout.split()
    used = [c for c in cached if f"code object from '{c}'" in r.stderr]
    return used, sorted(set(cached) - set(used))


def test_bytecode_written_and_used(tmp_path):
    """After write_bytecode every rnnkit module a command imports is loaded from its .pyc
    by a process that writes no bytecode (PYTHONDONTWRITEBYTECODE, as in this project's
    CI), instead of being compiled from source at every start; a module changed since is
    written again."""
    assert pc.write_bytecode()
    used, compiled = _loaded_from_bytecode(tmp_path, "rnnkit.lm.bundle")
    assert len(used) > 20 and compiled == []

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("x = 1\n")
    assert _loaded_from_bytecode(tmp_path, "pkg.m")[0] == []  # nothing written yet
    assert pc.write_bytecode(pkg)
    assert len(_loaded_from_bytecode(tmp_path, "pkg.m")[0]) == 2
    (pkg / "m.py").write_text("x = 22\n")
    later = (pkg / "m.py").stat().st_mtime + 10  # an edit made after the .pyc was written
    os.utime(pkg / "m.py", (later, later))
    assert _loaded_from_bytecode(tmp_path, "pkg.m")[1] != []
    assert pc.write_bytecode(pkg)
    used, compiled = _loaded_from_bytecode(tmp_path, "pkg.m")
    assert len(used) == 2 and compiled == []
    r = subprocess.run([sys.executable, "-c", "import pkg.m as m; print(m.x)"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.stdout.strip() == "22"


def test_precompile_rejects_unknown_cells(capsys):
    with pytest.raises(ValueError, match="cells must be some of lstm, gru, rnn, got transformer"):
        pc.precompile(("transformer",))
    with pytest.raises(ValueError, match="got none"):
        pc.precompile(())
    assert pc.main(["--cells", "lstm,transformer"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rnnkit precompile: error: cells must be some of lstm, gru, rnn, "
                   "got lstm,transformer"]
