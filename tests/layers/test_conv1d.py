"""Conv1D: float64 centred-difference gradient checks and parity with torch.nn.Conv1d."""

import numpy as np
import pytest

from rnnkit.gradcheck import numeric_grad, rel_error
from rnnkit.layers.conv import Conv1D

CASES = [  # (kernel, dilation, padding)
    (3, 1, "same"), (4, 1, "same"), (3, 2, "same"), (2, 3, "causal"), (3, 1, "valid"),
    (5, 2, 3), (1, 1, "same"),
]


def make(D=3, C=4, K=3, dil=1, pad="same", seed=0, dtype=np.float64):
    return Conv1D(D, C, K, dilation=dil, padding=pad, dtype=dtype, seed=seed)


@pytest.mark.parametrize("K, dil, pad", CASES)
def test_gradients_match_finite_differences(K, dil, pad):
    conv = make(K=K, dil=dil, pad=pad)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, 3))
    out, cache = conv.forward(x)
    w = rng.standard_normal(out.shape)
    dx, grads = conv.backward(w, cache)

    def f():
        return float((conv.forward(x)[0] * w).sum())

    assert rel_error(dx, numeric_grad(f, x)) < 1e-6
    for name in ("weight", "bias"):
        assert rel_error(grads[name], numeric_grad(f, conv.params[name])) < 1e-6


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("K, dil, pad", CASES)
def test_parity_with_torch_conv1d(K, dil, pad):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    conv = make(D=3, C=5, K=K, dil=dil, pad=pad, seed=2)
    x = np.random.default_rng(3).standard_normal((4, 11, 3))
    tpad = {"causal": 0}.get(pad, pad)
    m = torch.nn.Conv1d(3, 5, K, dilation=dil, padding=tpad, dtype=torch.float64)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(conv.params["weight"]))
        m.bias.copy_(torch.from_numpy(conv.params["bias"]))
    xt = torch.from_numpy(x.transpose(0, 2, 1).copy()).requires_grad_(True)
    inp = F.pad(xt, (conv.span, 0)) if pad == "causal" else xt
    yt = m(inp)  # (N, C, T')
    out, cache = conv.forward(x)
    assert out.shape == tuple(yt.shape[i] for i in (0, 2, 1))
    assert rel_error(out, yt.detach().numpy().transpose(0, 2, 1)) < 1e-12
    g = np.random.default_rng(4).standard_normal(out.shape)
    yt.backward(torch.from_numpy(g.transpose(0, 2, 1).copy()))
    dx, grads = conv.backward(g, cache)
    assert rel_error(dx, xt.grad.numpy().transpose(0, 2, 1)) < 1e-10
    assert rel_error(grads["weight"], m.weight.grad.numpy()) < 1e-10
    assert rel_error(grads["bias"], m.bias.grad.numpy()) < 1e-10


def test_hand_computed_and_causality():
    conv = Conv1D(1, 1, 2, padding="causal", dtype=np.float64, seed=0)
    conv.params["weight"][:] = [[[2.0, 3.0]]]  # out[t] = 2 x[t-1] + 3 x[t] + b
    conv.params["bias"][:] = 0.5
    x = np.array([[[1.0], [10.0], [100.0]]])
    out, _ = conv.forward(x)
    np.testing.assert_array_equal(out[0, :, 0], [3.5, 32.5, 320.5])
    # Causal: changing a later step never changes an earlier output.
    conv = make(K=4, dil=2, pad="causal", seed=5)
    x = np.random.default_rng(6).standard_normal((1, 12, 3))
    a, _ = conv.forward(x)
    x2 = x.copy()
    x2[0, 7:] += 1.0
    b, _ = conv.forward(x2)
    np.testing.assert_array_equal(a[0, :7], b[0, :7])
    assert np.abs(a[0, 7:] - b[0, 7:]).min() > 0


def test_shapes_float32_and_errors():
    conv = Conv1D(3, 4, 5, dilation=2, padding="valid", seed=0)
    out, cache = conv.forward(np.zeros((2, 10, 3), np.float32))
    assert out.shape == (2, 2, 4) and out.dtype == np.float32
    dx, g = conv.backward(np.ones((2, 2, 4), np.float32), cache)
    assert dx.shape == (2, 10, 3) and dx.dtype == np.float32 and g["weight"].shape == (4, 3, 5)
    with pytest.raises(ValueError, match="shorter than the kernel"):
        conv.forward(np.zeros((1, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, T, 3\)"):
        conv.forward(np.zeros((1, 12, 2), np.float32))
    with pytest.raises(ValueError, match="padding"):
        Conv1D(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="dtype"):
        conv.forward(np.zeros((1, 12, 3)))
    with pytest.raises(ValueError, match="dout"):
        conv.backward(np.ones((2, 3, 4), np.float32), cache)


def test_backward_does_not_mutate():
    conv = make(K=3, dil=2)
    x = np.random.default_rng(0).standard_normal((2, 7, 3))
    out, cache = conv.forward(x)
    g = np.ones_like(out)
    before = [c.copy() if isinstance(c, np.ndarray) else c for c in cache]
    a = conv.backward(g, cache)
    b = conv.backward(g, cache)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(g, np.ones_like(out))
    np.testing.assert_array_equal(cache[0], before[0])
