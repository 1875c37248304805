"""The two character LMs the benchmark races, built the natural way in each framework.

rnnkit: ``rnnkit.models.language_model.LanguageModel`` (Embedding -> LSTM/GRU/RNN -> Linear ->
softmax cross-entropy, hand-written backward) through its training path ``loss_and_grads``,
then global-norm clipping and Adam from ``rnnkit.optim`` (a minimal Adam below if that
module is missing); scoring through ``log_probs``, generation through ``stepper()``.
PyTorch: ``nn.Embedding`` + ``nn.LSTM``/``GRU``/``RNN`` (batch_first) + ``nn.Linear`` +
``F.cross_entropy`` + ``torch.optim.Adam`` + ``clip_grad_norm_``.  Same shapes, float32.
"""

from __future__ import annotations

import math

import numpy as np


try:
    from rnnkit.optim import Adam, clip_grad_norm

    OPTIM = "rnnkit.optim"
except ImportError:  # pragma: no cover - only before optim.py landed
    OPTIM = "bench-local Adam"

    class Adam:
        def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
            self.lr, self.betas, self.eps, self.state = lr, betas, eps, {}

        def step(self, params, grads):
            b1, b2 = self.betas
            for k, p in params.items():
                g = grads[k]
                m, v, t = self.state.get(k, (np.zeros_like(p), np.zeros_like(p), 0))
                t += 1
                m += (1 - b1) * (g - m)
                v *= b2
                v += (1 - b2) * g * g
                p -= self.lr / (1 - b1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + self.eps)
                self.state[k] = (m, v, t)

    def clip_grad_norm(grads, max_norm):
        total = math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in grads.values()))
        if total > max_norm:
            for g in grads.values():
                g *= max_norm / (total + 1e-6)
        return total


CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


class RnnkitLM:
    """``rnnkit.models.LanguageModel`` (its training path ``loss_and_grads``: embedding
    fused into layer 0's input product, time-major output head, fused softmax-cross-entropy,
    backward that releases its cache), global-norm clipping and Adam from ``rnnkit.optim``."""

    def __init__(self, mode, V=100, E=64, H=256, L=2, seed=0, backend="auto"):
        from rnnkit.models.language_model import LanguageModel, LMConfig

        self.V = V
        self.model = LanguageModel(LMConfig(vocab_size=V, cell=mode, num_layers=L,
                                            hidden_size=H, embed_dim=E), seed=seed)
        self.model.rnn.backend = self.model.rnn.backend if backend == "auto" else backend
        self.params = self.model.params
        self.opt = Adam(1e-3)

    def train_step(self, x, y, clip=1.0):
        loss, grads, _ = self.model.loss_and_grads(x, y)
        clip_grad_norm(grads, clip)
        self.opt.step(self.params, grads)
        return loss

    def score(self, x, y):
        """Total log-likelihood (nats) of y given x, forward only."""
        logp, _ = self.model.log_probs(x)
        return float(np.take_along_axis(logp, y[..., None], axis=-1).sum())

    def generate(self, n_tokens, rng, start=0):
        """Sample n_tokens at batch 1 through rnnkit's own sampler (``rnnkit.decode.sample``,
        what ``rnnkit sample`` runs: the filter, one inverse-CDF draw, the bookkeeping),
        each token fed back through ``LanguageModel.stepper`` (threads chosen as for a long
        ``rnnkit sample`` job; RNNKIT_STEP_THREADS=1 pins one): n_tokens steps, as the
        PyTorch loop below."""
        from rnnkit import decode

        step = self.model.stepper(threads="auto")
        lp, state = step(np.array([start], dtype=np.int64), None)
        (h,) = decode.sample(step, lp, state, rng, -1, n_tokens, stop_at_eos=False)
        return np.asarray(h.tokens)


def torch_lm(mode, V=100, E=64, H=256, L=2, seed=0):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[mode]

    class TorchLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.V = V
            self.emb = nn.Embedding(V, E)
            self.rnn = cls(E, H, L, batch_first=True)
            self.lin = nn.Linear(H, V)
            self.opt = torch.optim.Adam(self.parameters(), 1e-3)

        def forward(self, x, state=None):
            out, state = self.rnn(self.emb(x), state)
            return self.lin(out), state

        def train_step(self, x, y, clip=1.0):
            self.opt.zero_grad(set_to_none=True)
            logits, _ = self(x)
            loss = F.cross_entropy(logits.reshape(-1, self.V), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters(), clip)
            self.opt.step()
            return loss

        def score(self, x, y):
            with torch.inference_mode():
                logits, _ = self(x)
                return float(F.log_softmax(logits, -1).gather(-1, y[..., None]).sum())

        def generate(self, n_tokens, gen, start=0):
            with torch.inference_mode():
                tok = torch.full((1, 1), start, dtype=torch.long)
                state = None
                out = []
                for _ in range(n_tokens):
                    logits, state = self(tok, state)
                    tok = torch.multinomial(F.softmax(logits[:, -1], -1), 1, generator=gen)
                    out.append(tok)
                return torch.cat(out)

    return TorchLM()


def train_flops(mode, V, E, H, L, N, T):
    """Conventional FLOPs of one training step: the matrix products, backward = 2x forward.

    Counts layer 0's input product in full (rnnkit replaces it by a table lookup, so its
    real work is lower); gate math, softmax and Adam are not counted.
    """
    G = {"lstm": 4, "gru": 3, "rnn": 1}[mode]
    fwd = 0
    for layer in range(L):
        D = E if layer == 0 else H
        fwd += 2 * N * T * G * H * (D + H)
    fwd += 2 * N * T * H * V
    return 3 * fwd
