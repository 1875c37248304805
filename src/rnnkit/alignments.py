"""What an attention model looked at: alignment matrices as JSON and as a picture.

One record per input: the source tokens, the output tokens (the closing ``</s>`` included,
since the decoder attends when it emits it too), and ``weights``, one row per output token
with one weight per source token (each row sums to 1).  ``rnnkit seq2seq predict
--alignments OUT.json`` writes the records; ``--plot OUT.png`` draws the first few.

Both files are written to a temporary name and renamed, so a failure never leaves half a
file.  matplotlib is imported only when a picture is asked for.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

EOS_TOKEN = "</s>"


def records(lines, sources, outputs, weights) -> list:
    """JSON-ready records: ``lines`` the inputs as given, ``sources``/``outputs`` their
    token lists (outputs without ``</s>``), ``weights`` arrays (len(output) + 1, len(source))."""
    out = []
    for line, src, tgt, w in zip(lines, sources, outputs, weights):
        rows = [[round(float(x), 6) for x in row] for row in w]
        out.append({"input": line, "source": list(src), "output": list(tgt) + [EOS_TOKEN],
                    "weights": rows})
    return out


def collect(model, spec, meta, lines, batch=256, **decode):
    """Predict like ``rnnkit seq2seq predict`` and keep the attention weights:
    ``(texts, records)``, one text per line ("" for a blank one) and one record per
    non-blank line (the model must have attention: ValueError otherwise)."""
    from .data.batching import pad_sequences
    from .tasks import predict_ids, split_tokens

    if not getattr(model, "has_attention", False):
        raise ValueError("this model has no attention (it was trained with --attention none): "
                         "there are no alignments to write")
    vocab, level = spec.source_vocab(meta), spec.source_level(meta)
    toks = [split_tokens(line, level) for line in lines]
    keep = [i for i, t in enumerate(toks) if t]
    xs = [vocab.encode(toks[i]) for i in keep]
    preds = predict_ids(model, spec, xs, batch, **decode) if xs else []
    texts = [""] * len(lines)
    weights = []
    for start in range(0, len(keep), batch):
        ids, lengths = pad_sequences(xs[start: start + batch])
        weights += model.alignments(ids, lengths, preds[start: start + batch])
    tgt = meta["tgt_vocab"]
    outs = []
    for i, p in zip(keep, preds):
        texts[i] = spec.show(p, meta)
        outs.append(tgt.decode(np.array(p, dtype=np.int64)))
    return texts, records([lines[i] for i in keep], [toks[i] for i in keep], outs, weights)


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path, recs) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"alignments": recs}, ensure_ascii=False, indent=1) + "\n",
                       encoding="utf-8")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)


def plot(path, recs, *, title="attention") -> None:
    """Draw each record's matrix (source tokens across, output tokens down) into one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    n = len(recs)
    if n == 0:
        raise ValueError("nothing to plot: no non-empty input")
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    sizes = [(len(r["source"]), len(r["output"])) for r in recs]
    cw = max(2.5, 0.32 * max(s for s, _ in sizes) + 1.2)
    rh = max(2.5, 0.32 * max(o for _, o in sizes) + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(cw * cols, rh * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, r in zip(axes.flat, recs):
        ax.imshow(r["weights"], cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto",
                  interpolation="nearest")
        ax.set_xticks(range(len(r["source"])))
        ax.set_xticklabels(r["source"], fontsize=8)
        ax.set_yticks(range(len(r["output"])))
        ax.set_yticklabels(r["output"], fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
        shown = r["input"] if len(r["input"]) <= 30 else r["input"][:27] + "..."
        ax.set_title(shown, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=100)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    _replace(tmp, path)
