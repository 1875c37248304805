"""One training run through the API, for tests/training/test_mpi.py: as one process or under mpiexec.

    python tests/_mpi_worker.py OUT_DIR STEPS

For the language model and seq2seq, in float64 and float32, every rank writes its final
weights to ``OUT_DIR/MODE-DTYPE/rank{r}.npz``: the test compares the ranks
with each other and with a one-process run.  Tiny models with dropout, so the masks' split
over ranks is exercised; the global batch does not divide evenly over 2 ranks for seq2seq.
"""

import random
import sys
from pathlib import Path

import numpy as np

from rnnkit.training import dist

TEXT = "".join(f"the {a} {v} on the {b}.\n" for a in ("cat", "dog", "bird")
               for v in ("sat", "ran", "slept") for b in ("mat", "rug", "sofa", "floor")) * 4


def run_lm(dtype, out, steps, world):
    from rnnkit.lm.train import Trainer, TrainOptions

    corpus = out / "corpus.txt"
    if world.rank == 0:
        corpus.write_text(TEXT, encoding="utf-8")
    opts = TrainOptions(out=str(out / "run"), corpus=[str(corpus)], cell="lstm", layers=2,
                        hidden=12, embed=6, seq_len=7, batch=4, steps=steps, lr=1e-2,
                        dropout=0.2, eval_every=4, log_every=4, checkpoint_every=4, seed=5,
                        dtype=dtype)
    trainer = Trainer(opts, stream=open("/dev/null", "w"), world=world)
    trainer.run()
    return trainer.model.params


def run_seq2seq(dtype, out, steps, world):
    from rnnkit.models import Seq2Seq, Seq2SeqConfig
    from rnnkit.models._blocks import pad_batch
    from rnnkit.training import fit

    r = random.Random(0)
    words = ["".join(r.choice("abcd") for _ in range(r.randint(1, 7))) for _ in range(30)]
    xs = [np.array([4 + "abcd".index(c) for c in w]) for w in words]
    ys = [np.array([4 + "abcd".index(c) for c in w[::-1]]) for w in words]
    model = Seq2Seq(Seq2SeqConfig(8, 8, embed_dim=5, hidden_size=7, cell="gru",
                                  bidirectional=True, dropout=0.2, dtype=dtype, seed=2,
                                  max_target_len=20))

    def make(idx):
        ids, lengths = pad_batch([xs[i] for i in idx])
        return {"src": ids, "src_lengths": lengths, "targets": [ys[i] for i in idx]}

    fit(model, make, len(xs), steps=steps, batch_size=7, lr=0.02, seed=4,
        length_fn=lambda i: len(xs[i]), count_fn=lambda idx: sum(len(ys[i]) + 1 for i in idx),
        world=world)
    return model.params


if __name__ == "__main__":
    out, steps = Path(sys.argv[1]), int(sys.argv[2])
    world = dist.world()
    for mode, run in (("lm", run_lm), ("seq2seq", run_seq2seq)):
        for dtype in ("float64", "float32"):
            d = out / f"{mode}-{dtype}"
            d.mkdir(exist_ok=True)
            params = run(dtype, d, steps, world)
            np.savez(d / f"rank{world.rank}.npz", **params)
