"""The README's picture of ``rnnkit explain``: train a small character LSTM on the built-in
corpus, write the explain page for a few sentences, and screenshot it with headless chromium.

    python examples/explain_page.py                 # -> runs/explain_lm/, runs/explain.html, examples/explain.png
    python examples/explain_page.py --steps 1500    # a better model, a clearer page

The same by hand: ``rnnkit train --out runs/lm ...`` then
``rnnkit explain runs/lm "some text" --html page.html`` and open the page in a browser.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from rnnkit.cli import main as rnnkit_main  # noqa: E402
from rnnkit.data.corpus import default_corpus  # noqa: E402
from rnnkit.data.tokenize import get_tokenizer  # noqa: E402
from rnnkit.data.vocab import Vocab  # noqa: E402
from rnnkit.lm.bundle import save_model  # noqa: E402
from rnnkit.models import LanguageModel, LMConfig  # noqa: E402
from rnnkit.optim import Adam, clip_grad_norm  # noqa: E402

HERE = Path(__file__).resolve().parent
SENTENCES = [
    'Return the number of items in the list (or zero if it is empty).',
    'The "name" argument is a string; see the module documentation for details.',
    'If the file does not exist, raise an exception.',
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--out", default="runs/explain_lm")
    ap.add_argument("--html", default="runs/explain.html")
    ap.add_argument("--png", default=str(HERE / "explain.png"))
    ap.add_argument("--reuse", action="store_true", help="take the model already in --out")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if not (args.reuse and (Path(args.out) / "model.safetensors").exists()):
        train(args, t0)
    rc = rnnkit_main(["explain", args.out, *SENTENCES, "--html", args.html, "--force", "--top", "4"])
    if rc:
        sys.exit(rc)
    browser = shutil.which("chromium")
    if browser is None:
        print("no chromium: the page is written, no screenshot taken")
        return
    # For the picture only: one token's top-5 box forced open, as it shows on hover or focus.
    page = Path(args.html).read_text(encoding="utf-8")
    shot = Path(args.html).with_suffix(".shot.html")
    shot.write_text(page.replace("</head>", "<style>#t1-5 .tip{display:block}</style></head>", 1),
                    encoding="utf-8")
    with tempfile.TemporaryDirectory() as prof:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--no-first-run", f"--user-data-dir={prof}", "--hide-scrollbars",
                        "--window-size=1100,1500", f"--screenshot={Path(args.png).resolve()}",
                        shot.resolve().as_uri()], check=True, capture_output=True, timeout=300)
    print(f"wrote {args.png}; total {time.perf_counter() - t0:.0f} s")


def train(args, t0):
    text = default_corpus()
    tok = get_tokenizer("char")
    vocab = Vocab.build(tok.tokenize(text))
    ids = vocab.encode(tok.tokenize(text))
    model = LanguageModel(LMConfig(len(vocab), cell="lstm", num_layers=1, hidden_size=args.hidden,
                                   embed_dim=48), seed=0)
    opt = Adam(3e-3)
    rng = np.random.default_rng(0)
    S, N = 80, 32
    for step in range(1, args.steps + 1):
        s = rng.integers(0, len(ids) - S - 1, N)
        idx = s[:, None] + np.arange(S)
        loss, grads, _ = model.loss_and_grads(ids[idx], ids[idx + 1])
        clip_grad_norm(grads, 5.0)
        opt.step(model.params, grads)
        if step % 100 == 0:
            print(f"step {step}: loss {loss:.3f} nats/char ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    save_model(Path(args.out) / "model.safetensors", model, vocab, "char")


if __name__ == "__main__":
    main()
