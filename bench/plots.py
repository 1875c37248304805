"""Plots of training tokens/s against hidden size, batch and sequence length, rnnkit and
PyTorch side by side, from a bench/run.py results file (the "train" rows: the char-LM case
and its scaling variants).

    .venv/bin/python bench/plots.py bench/results-quiet.json     # -> bench/scaling-*.png
    .venv/bin/python bench/plots.py bench/results-cpu-1thread.json --prefix scaling-cpu-1thread

One PNG per cell (``scaling-lstm.png``, ...), three panels each: H (N 32, T 100), N (H 256,
T 100) and T (H 256, N 32), log-scaled tokens/s, the ratio printed over each rnnkit point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = {"H": 256, "N": 32, "T": 100}
AXES = (("H", "hidden size H (N 32, T 100)"), ("N", "batch N (H 256, T 100)"),
        ("T", "sequence length T (H 256, N 32)"))


def series(rows, mode, axis):
    """(x, rnnkit tok/s, PyTorch tok/s) of the rows that vary only ``axis``."""
    pts = {}
    for r in rows:
        if r.get("kind") != "train" or r.get("mode") != mode:
            continue
        if all(r[k] == v for k, v in BASE.items() if k != axis):
            pts[r[axis]] = (r["rnnkit_tok_s"], r["torch_tok_s"])
    xs = sorted(pts)
    return xs, [pts[x][0] for x in xs], [pts[x][1] for x in xs]


def plot(results_file: Path, out_dir: Path, label: str, prefix: str = "scaling") -> list[Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = json.loads(results_file.read_text())
    rows = data["results"]
    machine = data.get("machine", {})
    load = machine.get("loadavg_at_start")
    written = []
    for mode in sorted({r["mode"] for r in rows if r.get("kind") == "train"}):
        fig = Figure(figsize=(13, 4))
        FigureCanvasAgg(fig)
        for i, (axis, title) in enumerate(AXES):
            ax = fig.add_subplot(1, 3, i + 1)
            xs, ours, theirs = series(rows, mode, axis)
            if len(xs) < 2:
                ax.set_visible(False)
                continue
            ax.plot(xs, ours, "o-", label="rnnkit")
            ax.plot(xs, theirs, "s--", label="PyTorch")
            for x, a, b in zip(xs, ours, theirs):
                ax.annotate(f"{a / b:.2f}x", (x, a), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=8)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(xs)
            ax.set_xticklabels([str(x) for x in xs])
            ax.set_xlabel(title)
            ax.set_ylabel("training tokens/s")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(loc="best", fontsize=8)
        load_txt = f", load avg at start {load[0]:.1f}" if load else ""
        fig.suptitle(f"{mode.upper()} training step, rnnkit vs PyTorch "
                     f"({results_file.name}{load_txt}) {label}".strip())
        fig.tight_layout()
        path = out_dir / f"{prefix}-{mode}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=90)
        tmp.replace(path)
        written.append(path)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", default=str(HERE / "results-quiet.json"))
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--label", default="")
    ap.add_argument("--prefix", default="scaling", help="PNG names: PREFIX-CELL.png")
    a = ap.parse_args(argv)
    for p in plot(Path(a.results), Path(a.out), a.label, a.prefix):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
