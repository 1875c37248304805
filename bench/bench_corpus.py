"""The benchmark's English text: prose sentences from the docstrings of the Python standard
library and of installed packages (numpy, matplotlib, torch), parsed with ``ast`` — no
network, nothing copied into the repository.  Deterministic for fixed installed versions."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from rnnkit.data.corpus import _docstrings_of_file, _prose_sentences, default_corpus


def _package_sources(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(list(spec.submodule_search_locations)[0])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("tests", "test", "__pycache__"))
        out.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return out


def bench_corpus(max_bytes: int = 1_500_000) -> tuple[str, dict]:
    lines = default_corpus().splitlines()
    seen = set(lines)
    size = sum(len(s) + 1 for s in lines)
    used = ["stdlib"]
    for pkg in ("numpy", "matplotlib", "torch"):
        if size >= max_bytes:
            break
        used.append(pkg)
        for path in _package_sources(pkg):
            for doc in _docstrings_of_file(path):
                for s in _prose_sentences(doc):
                    if s not in seen and size + len(s) + 1 <= max_bytes:
                        seen.add(s)
                        lines.append(s)
                        size += len(s) + 1
    text = "\n".join(lines) + "\n"
    return text, {"bytes": len(text), "lines": len(lines), "sources": used,
                  "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


if __name__ == "__main__":
    t, info = bench_corpus()
    print(info)
