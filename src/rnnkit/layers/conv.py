"""A 1-D temporal convolution with hand-written backward: ``Conv1D``.

The notes leave open whether 1D convolutions serve the use cases of RNNs; this layer is the
baseline that lets rnnkit measure it.  Shapes: N batch, T time, D input channels, C output
channels, K kernel size.  Batch-major like every rnnkit layer: x (N, T, D) -> (N, T', C).
Weights in ``torch.nn.Conv1d``'s layout — ``weight`` (C, D, K), ``bias`` (C,) — and, like it,
a cross-correlation::

    out[n, t, c] = bias[c] + sum_{k, d} weight[c, d, k] * xpad[n, t + k * dilation, d]

``padding``: ``"same"`` (T' = T; the extra pad of an even span goes on the right, as torch's
``padding="same"``), ``"causal"`` (all the pad on the left: step t sees only steps <= t),
``"valid"`` (no pad) or an int p on both sides.  The work is one matrix product over the
K shifted views of the input (im2col), and its transpose in backward.
"""

from __future__ import annotations

import numpy as np

from .. import _checks

PADDINGS = ("same", "causal", "valid")


class Conv1D:
    """params: ``weight`` (C, D, K), ``bias`` (C,); ``U(±1/sqrt(D*K))`` as torch initialises."""

    def __init__(self, in_channels, out_channels, kernel_size, *, dilation=1, padding="same",
                 bias=True, dtype=np.float32, seed=None):
        self.in_channels = _checks.check_positive_int(in_channels, "in_channels")
        self.out_channels = _checks.check_positive_int(out_channels, "out_channels")
        self.kernel_size = _checks.check_positive_int(kernel_size, "kernel_size")
        self.dilation = _checks.check_positive_int(dilation, "dilation")
        if isinstance(padding, bool) or not (padding in PADDINGS or
                                             (isinstance(padding, (int, np.integer)) and padding >= 0)):
            raise ValueError(f"padding must be one of {PADDINGS} or an int >= 0, got {padding!r}")
        self.padding = padding
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype.name}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        k = 1.0 / np.sqrt(in_channels * kernel_size)
        self.params = {"weight": rng.uniform(-k, k, (out_channels, in_channels, kernel_size))
                       .astype(self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-k, k, out_channels).astype(self.dtype)

    @property
    def span(self) -> int:
        """How many steps one output sees, minus one: dilation * (K - 1)."""
        return self.dilation * (self.kernel_size - 1)

    def pads(self) -> tuple[int, int]:
        """(left, right) zero padding of the time axis."""
        s = self.span
        if self.padding == "same":
            return s // 2, s - s // 2
        if self.padding == "causal":
            return s, 0
        if self.padding == "valid":
            return 0, 0
        return int(self.padding), int(self.padding)

    def output_length(self, T: int) -> int:
        left, right = self.pads()
        return T + left + right - self.span

    def _w2(self):
        # (C, D, K) -> (C, K*D), k-major to match the (N, T', K, D) columns.
        C, D, K = self.params["weight"].shape
        return self.params["weight"].transpose(0, 2, 1).reshape(C, K * D)

    def forward(self, x):
        """x (N, T, D) -> ``(out (N, T', C), cache)``."""
        x = _checks.as_float_array(x, "x", 3, self.dtype, "N, T, D")
        N, T, D = x.shape
        if D != self.in_channels:
            raise ValueError(f"x must have shape (N, T, {self.in_channels}) (N, T, D), got {x.shape}")
        T_out = self.output_length(T)
        if T_out < 1:
            raise ValueError(f"a sequence of {T} steps is shorter than the kernel's span "
                             f"({self.span + 1} steps) with padding {self.padding!r}")
        left, right = self.pads()
        xpad = np.pad(x, ((0, 0), (left, right), (0, 0))) if left or right else x
        K, dil = self.kernel_size, self.dilation
        cols = np.empty((N, T_out, K, D), dtype=self.dtype)
        for k in range(K):  # K shifted views of the input, side by side
            cols[:, :, k, :] = xpad[:, k * dil : k * dil + T_out, :]
        cols2 = cols.reshape(N * T_out, K * D)
        out = cols2 @ self._w2().T
        if "bias" in self.params:
            out += self.params["bias"]
        return out.reshape(N, T_out, -1), (cols2, T, T_out)

    def backward(self, dout, cache):
        """dout (N, T', C) -> ``(dx (N, T, D), grads)``; never mutates its inputs."""
        cols2, T, T_out = cache
        N = cols2.shape[0] // T_out
        C, D, K = self.params["weight"].shape
        dout = _checks.check_shape(dout, "dout", (N, T_out, C), "N, T', C", self.dtype)
        d2 = dout.reshape(N * T_out, C)
        grads = {"weight": (d2.T @ cols2).reshape(C, K, D).transpose(0, 2, 1).copy()}
        if "bias" in self.params:
            grads["bias"] = d2.sum(axis=0)
        dcols = (d2 @ self._w2()).reshape(N, T_out, K, D)
        left, right = self.pads()
        dxpad = np.zeros((N, T + left + right, D), dtype=self.dtype)
        dil = self.dilation
        for k in range(K):
            dxpad[:, k * dil : k * dil + T_out, :] += dcols[:, :, k, :]
        return dxpad[:, left : left + T], grads

    __call__ = forward

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def __repr__(self) -> str:
        return (f"Conv1D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding!r}, dtype={self.dtype.name})")
