"""Optimizers against PyTorch, clipping values, the plateau schedule, state round trips."""

import math

import numpy as np
import pytest
import torch

from rnnkit.optim import SGD, Adam, ReduceLROnPlateau, clip_grad_norm, grads_finite


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3),
              "emb.W": rng.standard_normal((5, 2))}
    grad_seq = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(6)]
    return params, grad_seq


def _run_torch(torch_opt_cls, params, grad_seq, **kw):
    tparams = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    opt = torch_opt_cls(list(tparams.values()), **kw)
    for grads in grad_seq:
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt.step()
    return {k: p.detach().numpy() for k, p in tparams.items()}


def _run_ours(opt, params, grad_seq):
    params = {k: v.copy() for k, v in params.items()}
    for grads in grad_seq:
        before = {k: g.copy() for k, g in grads.items()}
        opt.step(params, grads)
        assert all((before[k] == grads[k]).all() for k in grads)  # grads not modified
    return params


@pytest.mark.parametrize("kw", [
    dict(lr=1e-2),
    dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6),
    dict(lr=1e-2, weight_decay=0.1),
])
def test_adam_matches_torch(kw):
    params, grad_seq = _problem()
    ours = _run_ours(Adam(**kw), params, grad_seq)
    ref = _run_torch(torch.optim.Adam, params, grad_seq, **kw)
    for k in params:
        np.testing.assert_allclose(ours[k], ref[k], rtol=0, atol=1e-12)
        assert not np.allclose(ours[k], params[k])  # the parameters did move


@pytest.mark.parametrize("kw", [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.5, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, nesterov=True),
])
def test_sgd_matches_torch(kw):
    params, grad_seq = _problem(1)
    ours = _run_ours(SGD(**kw), params, grad_seq)
    ref = _run_torch(torch.optim.SGD, params, grad_seq, **kw)
    for k in params:
        np.testing.assert_allclose(ours[k], ref[k], rtol=0, atol=1e-12)


def test_sgd_hand_values():
    p = {"w": np.array([1.0, -2.0])}
    opt = SGD(lr=0.5, momentum=0.9)
    opt.step(p, {"w": np.array([1.0, 1.0])})   # buf = g = 1; p = 1 - 0.5, -2 - 0.5
    assert p["w"].tolist() == [0.5, -2.5]
    opt.step(p, {"w": np.array([1.0, 0.0])})   # buf = 0.9*1 + [1, 0] = [1.9, 0.9]
    np.testing.assert_allclose(p["w"], [0.5 - 0.95, -2.5 - 0.45], rtol=0, atol=1e-15)


def test_adam_first_step_is_lr_times_sign():
    # After one step m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps).
    p = {"w": np.array([0.0, 0.0, 0.0])}
    g = np.array([3.0, -0.5, 1e-3])
    Adam(lr=0.1, eps=1e-8).step(p, {"w": g})
    np.testing.assert_allclose(p["w"], -0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_float32_params_stay_float32():
    p = {"w": np.ones((2, 2), np.float32)}
    opt = Adam(lr=1e-3)
    opt.step(p, {"w": np.full((2, 2), 0.5, np.float32)})
    assert p["w"].dtype == np.float32 and opt.state["w"]["exp_avg"].dtype == np.float32
    np.testing.assert_allclose(p["w"], 1 - 1e-3, rtol=1e-6)


def test_state_dict_round_trip_continues_identically():
    params, grad_seq = _problem(2)
    a = Adam(lr=1e-2, weight_decay=0.01)
    pa = {k: v.copy() for k, v in params.items()}
    for g in grad_seq[:3]:
        a.step(pa, g)
    sd = a.state_dict()
    assert sd["type"] == "Adam" and sd["betas"] == [0.9, 0.999] and sd["step/W"] == 3
    assert set(k for k, v in sd.items() if isinstance(v, np.ndarray)) == {
        f"{s}/{n}" for s in ("exp_avg", "exp_avg_sq") for n in params}
    b = Adam(lr=99.0)
    b.load_state_dict(sd)
    assert b.lr == 1e-2 and b.weight_decay == 0.01
    pb = {k: v.copy() for k, v in pa.items()}
    for g in grad_seq[3:]:
        a.step(pa, g)
        b.step(pb, g)
    for k in params:
        assert (pa[k] == pb[k]).all()
    # the loaded state is a copy, not an alias of the dict it came from
    sd["exp_avg/W"][:] = 123.0
    assert not (b.state["W"]["exp_avg"] == 123.0).any()


def test_sgd_state_dict_and_wrong_type():
    p = {"w": np.ones(3)}
    s = SGD(lr=0.1, momentum=0.9)
    s.step(p, {"w": np.ones(3)})
    sd = s.state_dict()
    assert sd["momentum_buffer/w"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="for 'SGD', not Adam"):
        Adam().load_state_dict(sd)
    with pytest.raises(ValueError, match="unknown optimizer state key"):
        SGD(lr=0.1).load_state_dict({**sd, "bogus/w": np.ones(3)})
    with pytest.raises(ValueError, match="momentum"):
        SGD(lr=0.1).load_state_dict({**sd, "momentum": 1.5})


@pytest.mark.parametrize("make, match", [
    (lambda: SGD(lr=0.0), "lr must be > 0"),
    (lambda: SGD(lr=-1.0), "lr must be > 0"),
    (lambda: SGD(lr=float("nan")), "finite"),
    (lambda: SGD(lr=0.1, momentum=1.0), "momentum"),
    (lambda: SGD(lr=0.1, nesterov=True), "nesterov"),
    (lambda: SGD(lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda: Adam(lr=0), "lr must be > 0"),
    (lambda: Adam(betas=(1.0, 0.9)), r"betas\[0\]"),
    (lambda: Adam(betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda: Adam(eps=0.0), "eps"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_step_checks_names_and_shapes():
    opt = SGD(lr=0.1)
    with pytest.raises(ValueError, match="no parameter"):
        opt.step({"w": np.ones(2)}, {"v": np.ones(2)})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"w": np.ones(2)}, {"w": np.ones(3)})
    p = {"w": np.ones(2), "frozen": np.ones(2)}
    opt.step(p, {"w": np.ones(2)})  # a parameter without gradient is left alone
    assert p["w"].tolist() == [0.9, 0.9] and p["frozen"].tolist() == [1.0, 1.0]


def test_clip_grad_norm_values_and_torch():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    total = clip_grad_norm(g, max_norm=1.0)
    assert total == 5.0
    scale = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(g["a"], [3 * scale, 0], rtol=1e-15)
    np.testing.assert_allclose(g["b"], [[4 * scale]], rtol=1e-15)
    # below the threshold nothing changes
    g = {"a": np.array([0.3, 0.4])}
    assert clip_grad_norm(g, 1.0) == pytest.approx(0.5, abs=1e-15)
    assert g["a"].tolist() == [0.3, 0.4]
    # same as torch
    rng = np.random.default_rng(3)
    grads = {k: rng.standard_normal(s) for k, s in (("x", (3, 4)), ("y", (7,)))}
    tp = [torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for v in grads.values()]
    for p, v in zip(tp, grads.values()):
        p.grad = torch.tensor(v)
    tnorm = torch.nn.utils.clip_grad_norm_(tp, 0.7)
    ours = clip_grad_norm(grads, 0.7)
    assert ours == pytest.approx(float(tnorm), rel=1e-14)
    for p, v in zip(tp, grads.values()):
        np.testing.assert_allclose(v, p.grad.numpy(), rtol=0, atol=1e-15)


def test_clip_grad_norm_float32_no_overflow_and_nonfinite():
    g = {"a": np.full(4, 3e38, np.float32)}
    total = clip_grad_norm(g, 1.0)
    assert total == pytest.approx(6e38, rel=1e-6)  # float32 squares would overflow
    np.testing.assert_allclose(g["a"], 0.5, rtol=1e-5)
    g = {"a": np.array([1.0, np.nan])}
    assert math.isnan(clip_grad_norm(g, 1.0))
    assert g["a"][0] == 1.0  # left unchanged
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(g, 0.0)


def test_grads_finite():
    assert grads_finite({"a": np.ones(3), "b": np.zeros((2, 2), np.float32)})
    assert not grads_finite({"a": np.ones(3), "b": np.array([np.inf])})
    assert not grads_finite({"a": np.array([np.nan])})
    assert grads_finite({})


def test_reduce_lr_on_plateau_matches_torch():
    metrics = [5.0, 4.0, 4.0, 3.9999, 4.1, 3.0, 3.0, 3.0, 3.0, 2.0, float("nan"), 2.5, 2.5, 2.5,
               2.5, 2.5, 2.5, 2.5]
    kw = dict(factor=0.5, patience=2, min_lr=1e-3, threshold=1e-3, cooldown=1)
    opt = SGD(lr=0.01)
    sched = ReduceLROnPlateau(opt, **kw)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.01)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, mode="min", threshold_mode="rel", **kw)
    lrs, tlrs = [], []
    for m in metrics:
        sched.step(m)
        tsched.step(m)
        lrs.append(opt.lr)
        tlrs.append(topt.param_groups[0]["lr"])
    assert lrs == pytest.approx(tlrs, rel=1e-15)
    assert lrs[-1] == 1e-3 and lrs[0] == 0.01  # it reduced all the way to min_lr


def test_reduce_lr_state_round_trip():
    opt = SGD(lr=1.0)
    s = ReduceLROnPlateau(opt, factor=0.5, patience=1)
    for m in (3.0, 3.0):
        s.step(m)
    st = s.state_dict()
    assert st == {"best": 3.0, "num_bad": 1, "cooldown_left": 0}
    s2 = ReduceLROnPlateau(opt, factor=0.5, patience=1)
    s2.load_state_dict(st)
    assert s2.step(3.0) is True and opt.lr == 0.5
    with pytest.raises(ValueError):
        s2.load_state_dict({"best": None})
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(opt, factor=1.0)
