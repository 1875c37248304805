"""rnnkit.kernels._cacheload: a process that finds rnnkit's kernels in Numba's disk cache
loads them without refreshing Numba's target context (the registries a compile needs), gets
the same numbers as the process that compiled them, and still compiles anything else
through Numba's own path; RNNKIT_NUMBA_REFRESH=1 restores Numba's load."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

PROBE = r"""
import json
import numpy as np
from numba import njit
from numba.core import base

calls = []
numba_refresh = base.BaseContext.refresh


def counting(self):
    calls.append(1)
    return numba_refresh(self)


base.BaseContext.refresh = counting
from rnnkit.kernels import adam, sequence
from rnnkit.models.language_model import LanguageModel, LMConfig
from rnnkit.optim import Adam

m = LanguageModel(LMConfig(vocab_size=11, cell="lstm", num_layers=1, hidden_size=8,
                           embed_dim=4), seed=0)
x = np.random.default_rng(0).integers(0, 11, (4, 6))
loss, grads, _ = m.loss_and_grads(x, x)
Adam(1e-3).step(m.params, grads)
after_loads = len(calls)
stats = {f.__name__: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
         for f in (sequence.lstm_fwd_seq, sequence.lstm_bwd_seq, adam.adam_update)}


@njit
def fresh(a):  # not cacheable (defined in -c): compiled here, after the loads
    return (a * a).sum()


print(json.dumps({"loss": float(loss),
                  "params": {k: np.asarray(v, np.float64).ravel().tolist()
                             for k, v in m.params.items()},
                  "refreshes_after_loads": after_loads, "stats": stats,
                  "fresh": float(fresh(np.arange(4.0))), "refreshes_at_end": len(calls)}))
"""


def _run(cache_dir, refresh=None):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "RNNKIT_NO_WARM": "1"}
    env.pop("RNNKIT_NUMBA_REFRESH", None)
    if refresh is not None:
        env["RNNKIT_NUMBA_REFRESH"] = refresh
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cached_kernels_load_without_the_compiler_set_up(tmp_path):
    cold = _run(tmp_path)
    assert cold["stats"] == {name: [0, 1] for name in cold["stats"]}  # compiled, then cached
    assert cold["refreshes_after_loads"] >= 1  # a compile refreshes the context

    warm = _run(tmp_path)
    assert warm["stats"] == {name: [1, 0] for name in warm["stats"]}  # loaded from disk
    assert warm["refreshes_after_loads"] == 0  # ... without Numba's context refresh
    assert warm["loss"] == cold["loss"]  # the very machine code the cold process ran
    assert warm["params"] == cold["params"]
    # Compiling afterwards still goes through Numba's own path, registries and all.
    assert warm["fresh"] == 14.0
    assert warm["refreshes_at_end"] >= 1

    numba_way = _run(tmp_path, refresh="1")
    assert numba_way["stats"] == warm["stats"]
    assert numba_way["refreshes_after_loads"] >= 1  # Numba's load, refresh included
    assert numba_way["loss"] == cold["loss"]
    assert numba_way["params"] == cold["params"]


def test_other_functions_keep_numbas_load(tmp_path):
    """A cached Numba function outside rnnkit loads through Numba's own method."""
    mod = tmp_path / "userkernel.py"
    mod.write_text("from numba import njit\n\n\n@njit(cache=True)\ndef twice(a):\n"
                   "    return 2 * a\n")
    probe = ("import json, rnnkit.kernels._math\n"
             "from numba.core import base\n"
             "calls = []\n"
             "orig = base.BaseContext.refresh\n"
             "base.BaseContext.refresh = lambda self: calls.append(1) or orig(self)\n"
             "import userkernel\n"
             "print(json.dumps([userkernel.twice(21), len(calls),"
             " sum(userkernel.twice.stats.cache_hits.values())]))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH":
           os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("RNNKIT_NUMBA_REFRESH", None)
    out = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert out[0][0] == out[1][0] == 42
    assert out[1][2] == 1  # the second process loaded it from the cache ...
    assert out[1][1] >= 1  # ... through Numba's load, which refreshes the context


def test_install_is_idempotent_and_scoped():
    from numba.core import caching

    from rnnkit.kernels import _cacheload

    assert _cacheload.install() is True
    lean = caching.Cache.load_overload
    assert _cacheload.install() is True
    assert caching.Cache.load_overload is lean  # not wrapped twice
    assert lean.numba_load_overload.__module__ == "numba.core.caching"

    class FakeCache:
        _py_func = sum  # a builtin: not rnnkit's

    assert _cacheload._ours(FakeCache()) is False
    from rnnkit.kernels.adam import adam_update

    assert _cacheload._ours(adam_update._cache) is True
