"""FDM: error orders measured against autograd, exact evaluation counts, steps, dtypes, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.zeroth_order import FDM

EXPECTED_ORDER = {"forward2": 1, "backward2": 1, "central3": 2, "forward3": 2, "backward3": 2, "central5": 4}
# closure runs for n = 5 entries, written out by hand from each stencil
EXPECTED_RUNS_N5 = {"forward2": 6, "backward2": 6, "central3": 10, "forward3": 11, "backward3": 11, "central5": 20}


def smooth(x: torch.Tensor) -> torch.Tensor:
    return torch.sum(torch.sin(1.3 * x) * torch.exp(0.4 * x)) + 0.25 * torch.sum(x[:-1] * x[1:] ** 2)


def counting(w: torch.Tensor, fn=smooth):
    calls = {"n": 0, "backward": 0}

    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] += 1
        loss = fn(w)
        if backward:
            calls["backward"] += 1
            loss.backward()
        return loss

    return closure, calls


def autograd_grad(x0: torch.Tensor, fn=smooth) -> torch.Tensor:
    x = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x), x)
    return g


X0 = torch.tensor([0.3, -0.8, 1.1, 0.5, -1.4], dtype=torch.float64)


@pytest.mark.parametrize("formula", list(EXPECTED_ORDER))
def test_error_slope_matches_formula_order(formula: str) -> None:
    truth = autograd_grad(X0)
    hs = [0.2, 0.1, 0.05, 0.025] if formula != "central5" else [0.4, 0.2, 0.1, 0.05]
    errs = []
    for h in hs:
        w = X0.clone().requires_grad_(True)
        closure, _ = counting(w)
        FDM([w], formula=formula, h=h).step(closure)
        errs.append(float((w.grad - truth).abs().max()))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - EXPECTED_ORDER[formula]) < 0.25, (formula, slope, errs)


@pytest.mark.parametrize("formula", list(EXPECTED_ORDER))
def test_evaluation_counts_and_returned_loss(formula: str) -> None:
    w = X0.clone().requires_grad_(True)
    closure, calls = counting(w)
    est = FDM([w], formula=formula, h=1e-3)
    loss = est.step(closure)
    assert calls["n"] == EXPECTED_RUNS_N5[formula] == est.nfev
    assert calls["backward"] == 0
    assert torch.equal(w.detach(), X0)  # parameters restored bit for bit
    f0 = float(smooth(X0))
    if formula.startswith(("forward", "backward")):
        assert loss.item() == f0
    else:  # mean of f(x ± h e_i): O(h²) away from f(x)
        assert abs(loss.item() - f0) < 1e-5


def test_actual_step_is_used_in_low_precision() -> None:
    # h = 1e-3 is not representable around 2.5 in float32; the quotient uses the step taken
    w = torch.tensor([2.5, -3.7], dtype=torch.float32, requires_grad=True)
    closure, _ = counting(w, fn=lambda x: (x**2).sum())
    FDM([w], formula="central3", h=1e-3).step(closure)
    assert torch.allclose(w.grad, 2 * w.detach(), rtol=2e-4)


def test_relative_step_follows_scipy_rule() -> None:
    # step h*max(1,|x|) with the sign of x: forward2 error is +/- h*max(1,|x|)*f''/2
    w = torch.tensor([4.0, -4.0, 0.5], dtype=torch.float64, requires_grad=True)
    closure, _ = counting(w, fn=lambda x: (x**2).sum())
    FDM([w], formula="forward2", h=1e-3, relative=True).step(closure)
    expected = 2 * w.detach() + torch.tensor([1e-3 * 4, -1e-3 * 4, 1e-3])
    assert torch.allclose(w.grad, expected, atol=1e-9)


def test_per_group_h() -> None:
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    closure, calls = counting(a, fn=lambda _: (a**2).sum() + (b**2).sum())
    FDM([{"params": [a], "h": 1e-2}, {"params": [b]}], formula="forward2", h=1e-5).step(closure)
    assert torch.allclose(a.grad - 2 * a.detach(), torch.full((2,), 1e-2, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(b.grad - 2 * b.detach(), torch.full((2,), 1e-5, dtype=torch.float64), atol=1e-9)
    assert calls["n"] == 5


def test_multiple_shapes_non_contiguous_and_complex() -> None:
    m = torch.randn(3, 4, dtype=torch.float64).t().requires_grad_(True)  # non-contiguous leaf
    z = torch.tensor([1 + 2j, -0.5 + 0.25j], dtype=torch.complex128, requires_grad=True)

    def fn(_):
        return (torch.sin(m) ** 2).sum() + (z.abs() ** 2).sum() + (m.sum() * z.real.sum())

    loss = fn(None)
    gm, gz = torch.autograd.grad(loss, [m, z])
    closure, _ = counting(m, fn=fn)
    FDM([m, z], formula="central5", h=1e-3).step(closure)
    assert torch.allclose(m.grad, gm, atol=1e-9)
    assert torch.allclose(z.grad, gz, atol=1e-9)  # torch's convention: dL/dRe + i dL/dIm


def test_inner_optimizer_applies_update() -> None:
    w = X0.clone().requires_grad_(True)
    closure, _ = counting(w)
    opt = FDM([w], formula="central3", h=1e-5, opt=lambda p: torch.optim.SGD(p, lr=0.1))
    opt.step(closure)
    assert torch.allclose(w.detach(), X0 - 0.1 * autograd_grad(X0), atol=1e-8)


def test_without_inner_optimizer_only_grad_is_set() -> None:
    w = X0.clone().requires_grad_(True)
    closure, _ = counting(w)
    FDM([w]).step(closure)
    assert torch.equal(w.detach(), X0) and w.grad is not None


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"formula expected one of .*'central5'.*got 'central'"):
        FDM(formula="central")
    with pytest.raises(ValueError, match="h expected a finite number > 0"):
        FDM(h=0.0)
    with pytest.raises(ValueError, match="h expected a finite number > 0"):
        FDM(h=-1e-3)
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="needs a closure"):
        FDM([w]).step()
    with pytest.raises(RuntimeError, match="constructed without parameters"):
        FDM().step(lambda backward=True: w.sum())
    with pytest.raises(TypeError, match=r"dtype torch\.int64"):
        FDM([torch.zeros(2, dtype=torch.long)])
    with pytest.raises(ValueError, match="h expected a finite number"):
        FDM([{"params": [w], "h": -1.0}])
    with pytest.raises(ValueError, match=r"FDM: opt \(SGD\) was constructed over other tensors"):
        FDM([w], opt=torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1))
    with pytest.raises(TypeError, match=r"FDM: opt \(LBFGS\) needs a closure in step\(\)"):
        FDM([w], opt=(torch.optim.LBFGS, {}))
    with pytest.raises(TypeError, match="not a gradient estimator"):
        FDM([w], opt=tzb.SPSA())
    bf = torch.tensor([1.0], dtype=torch.bfloat16, requires_grad=True)
    with pytest.raises(ValueError, match=r"too small for a torch\.bfloat16 entry"):
        FDM([bf], h=1e-4).step(lambda backward=True: bf.sum())


def test_bound_twice_and_bind() -> None:
    w = torch.zeros(2, requires_grad=True)
    est = FDM(h=1e-3)
    assert not est.is_bound
    assert est.bind([w]) is est and est.is_bound
    with pytest.raises(RuntimeError, match="already has parameters"):
        est.bind([w])


def test_nonfinite_loss_skips_update() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = FDM([w], formula="central3", opt=lambda p: torch.optim.SGD(p, lr=0.1))
    with pytest.warns(tzb.NonFiniteLossWarning, match="no update was applied"):
        opt.step(lambda backward=True: torch.log(w - 1.0005).sum())
    assert torch.equal(w.detach(), torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_closure_error_restores_parameters() -> None:
    w = X0.clone().requires_grad_(True)
    calls = {"n": 0}

    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("boom")
        return smooth(w)

    est = FDM([w], formula="central3")
    with pytest.raises(RuntimeError, match="boom"):
        est.step(closure)
    assert torch.equal(w.detach(), X0)
    assert est.nfev == 4


def test_plain_closure_is_supported() -> None:
    w = X0.clone().requires_grad_(True)

    def closure() -> torch.Tensor:  # a standard closure: zero_grad, forward, backward
        w.grad = None
        loss = smooth(w)
        loss.backward()
        return loss

    FDM([w], formula="central5", h=1e-2).step(closure)
    assert torch.allclose(w.grad, autograd_grad(X0), atol=1e-7)
    assert math.isfinite(float(w.grad.sum()))


def test_group_options_without_inner_optimizer_warn() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.warns(tzb.IgnoredOptionWarning, match=r"\['lr'\] are not used"):
        FDM([{"params": [w], "lr": 0.1}])
    with pytest.warns(tzb.IgnoredOptionWarning, match=r"\['momentum'\] are not used"):
        tzb.RandomGrad([{"params": [w], "momentum": 0.9}])
    FDM([{"params": [w], "lr": 0.1}], opt=lambda p: torch.optim.SGD(p))  # goes to SGD: no warning


def test_estimate_with_foreign_groups_uses_default_h() -> None:
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    est = FDM(formula="forward2", h=1e-2)
    loss = est.estimate(lambda backward=True: (w**2).sum(), [{"params": [w]}])
    assert loss == 5.0
    assert torch.allclose(w.grad, 2 * w.detach() + 1e-2)
