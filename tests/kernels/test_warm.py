"""The cold-start helper (rnnkit.kernels.warm): on an empty Numba cache it compiles the
backward loop, Adam and the scatter with exactly the types a training step passes, so the
step loads them from the cache (cache hits, no compile of its own); on a cache that holds
them it does not start."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

STEP = r"""
import json, sys
import numpy as np
from rnnkit.kernels import warm
started = warm.start(sys.argv[1], "float32")
if started:
    warm.wait_for("pick")  # everything the helper makes is cached now
from rnnkit.models.language_model import LanguageModel, LMConfig
from rnnkit.optim import Adam, clip_grad_norm
from rnnkit.kernels import adam, loss, sequence, table
m = LanguageModel(LMConfig(vocab_size=11, cell=sys.argv[1], num_layers=1, hidden_size=8,
                           embed_dim=4), seed=0)
x = np.random.default_rng(0).integers(0, 11, (4, 6))
_, grads, _ = m.loss_and_grads(x, x)
clip_grad_norm(grads, 1.0)
Adam(1e-3).step(m.params, grads)
m.target_log_probs(x, x)  # what validation runs
bwd = getattr(sequence, warm._BWD[sys.argv[1]])
stats = {f.__name__: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
         for f in (bwd, adam.adam_update, adam.sq_sum, table.scatter_rows, loss._pick32)}
print(json.dumps({"started": started, "stats": stats}))
"""


def _run(cell, cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    env.pop("RNNKIT_NO_WARM", None)
    r = subprocess.run([sys.executable, "-c", STEP, cell], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_helper_compiles_what_the_step_loads(cell, tmp_path):
    cold = _run(cell, tmp_path)
    assert cold["started"] is True
    # The step found all three in the cache: the helper's signatures are the step's own.
    assert cold["stats"] == {name: [1, 0] for name in cold["stats"]}
    warm = _run(cell, tmp_path)
    assert warm["started"] is False  # cached already: no helper
    assert warm["stats"] == cold["stats"]


def test_no_helper_without_need(monkeypatch):
    """With the cache made to look cold, a helper starts only for one process of a known
    loop and without RNNKIT_NO_WARM (Popen recorded, nothing launched)."""
    from rnnkit.kernels import warm

    launched = []
    monkeypatch.setattr(warm, "cached", lambda func: False)
    monkeypatch.setattr(warm, "_proc", None)
    monkeypatch.setattr(warm.subprocess, "Popen", lambda args, **kw: launched.append(args) or "p")
    monkeypatch.setenv("RNNKIT_NO_WARM", "1")
    assert warm.start("lstm", "float32") is False
    monkeypatch.delenv("RNNKIT_NO_WARM")
    assert warm.start("transformer", "float32") is False  # no such loop
    assert warm.start("lstm", "float32", processes=2) is False  # MPI ranks compile themselves
    assert launched == []
    assert warm.start("gru", "float32") is True
    assert launched[0][-2:] == ["gru", "float32"]
    monkeypatch.setattr(warm, "_proc", None)
    warm.wait_for("bwd")  # no helper: returns at once


def test_wait_gives_up_on_a_silent_or_dead_helper(monkeypatch):
    from rnnkit.kernels import warm

    monkeypatch.setattr(warm, "_done", set())
    # A helper that prints nothing and sleeps: stopped after WAIT_S, the run goes on.
    monkeypatch.setattr(warm, "WAIT_S", 0.5)
    monkeypatch.setattr(warm, "_proc", subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], stdout=subprocess.PIPE,
        bufsize=0))
    proc = warm._proc
    warm.wait_for("bwd")
    assert warm._proc is None and proc.returncode is not None
    # A helper that says one name and exits: the others are not waited for.
    monkeypatch.setattr(warm, "_proc", subprocess.Popen(
        [sys.executable, "-c", "print('bwd', flush=True)"], stdout=subprocess.PIPE, bufsize=0))
    warm.wait_for("bwd")
    assert "bwd" in warm._done
    warm.wait_for("adam")
    assert warm._proc is None
