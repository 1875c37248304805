"""Which CPU a benchmark ran on: its model name and widest vector extension.

rnnkit's ratios to PyTorch depend on the CPU (bench/RESULTS.md, session 10: the same code
measured 1.19x on an AVX-512 Intel CPU and 1.49x on an AVX2 AMD one), so every benchmark's
JSON records it.
"""

from __future__ import annotations

import platform


def cpu() -> dict:
    """{"model": ..., "vectors": "avx512f" | "avx2" | "avx" | "other", "flags": [...]}."""
    model, flags, found = platform.processor() or "", set(), False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not found:
                    model, found = line.split(":", 1)[1].strip(), True
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    vectors = next((v for v in ("avx512f", "avx2", "avx") if v in flags), "other")
    return {"model": model, "vectors": vectors,
            "flags": sorted(f for f in flags if f.startswith(("avx", "fma")))}


if __name__ == "__main__":
    import json

    print(json.dumps(cpu()))
