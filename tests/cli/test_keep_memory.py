"""rnnkit.memory.keep_freed_memory: the command line keeps the blocks a step frees for the
next step instead of unmapping them, unless the user turned it off or tuned malloc already.

Each case runs in a fresh interpreter (the setting is made once per process).  The effect is
measured, not assumed: with the setting, allocating and freeing the same 48 MB array again
and again touches pages that are already mapped, so the loop makes (almost) no page faults.
"""

import os
import subprocess
import sys

import pytest

from rnnkit import memory

glibc = pytest.mark.skipif(not memory._glibc(), reason="mallopt thresholds are glibc's")

PROBE = """
import resource, sys
import numpy as np
from rnnkit.memory import keep_freed_memory
applied = keep_freed_memory()
a = np.ones(12_000_000, dtype=np.float32); del a   # the first one maps its pages
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    a = np.ones(12_000_000, dtype=np.float32)     # 48 MB, every page written
    del a
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(**env):
    clean = {k: v for k, v in os.environ.items()
             if k not in memory.USER_SETTINGS and k != memory.ENV}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@glibc
def test_freed_blocks_are_reused_without_page_faults():
    applied, faults = probe()
    assert applied
    # 8 x 48 MB written: ~94,000 faults of 4 KiB pages (or ~190 of 2 MiB pages) if each
    # array were mapped afresh; reused, only a handful.
    assert faults < 100, faults


@glibc
@pytest.mark.parametrize("env", [{memory.ENV: "0"}, {memory.ENV: "off"},
                                 {"MALLOC_TRIM_THRESHOLD_": "1000000"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}])
def test_the_user_keeps_the_last_word(env):
    applied, _ = probe(**env)
    assert not applied


def test_once_per_process(monkeypatch):
    monkeypatch.setattr(memory, "_applied", True)
    assert memory.keep_freed_memory() is True
    monkeypatch.setattr(memory, "_applied", False)
    assert memory.keep_freed_memory() is False


def test_the_command_applies_it(monkeypatch, tmp_path):
    from rnnkit.cli import main

    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    (tmp_path / "c.txt").write_text("ab ba\n" * 40)
    assert main(["train", str(tmp_path / "c.txt"), "--out", str(tmp_path / "m"), "--layers",
                 "1", "--hidden", "4", "--embed", "2", "--seq-len", "4", "--batch", "2",
                 "--steps", "1", "--eval-every", "1", "--json"]) == 0
    assert calls == [1]
