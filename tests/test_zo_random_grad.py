"""RandomGrad: the perturb-compare rule checked step by step against a hand-computed sequence."""

from __future__ import annotations

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.zeroth_order import RandomGrad


def rosen(x: torch.Tensor) -> torch.Tensor:
    return torch.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


X0 = torch.tensor([-1.1, 2.5, 0.3], dtype=torch.float64)


def recording_closure(w: torch.Tensor, log: list):
    def closure(backward: bool = True) -> torch.Tensor:
        assert not backward
        loss = rosen(w)
        log.append((w.detach().clone(), float(loss)))
        return loss

    return closure


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher", "uniform", "sphere"])
def test_follows_the_rule_step_by_step(distribution: str) -> None:
    lr = 0.05
    w = X0.clone().requires_grad_(True)
    log: list = []
    opt = RandomGrad([w], lr=lr, distribution=distribution, seed=0)
    x = X0.clone()  # the hand-computed sequence
    rises = 0
    for _ in range(40):
        log.clear()
        loss = opt.step(recording_closure(w, log))
        (x_eval, f0), (x_try, f1) = log  # exactly two runs: f(x), then f(x + lr d)
        assert torch.equal(x_eval, x) and loss.item() == f0
        d = (x_try - x) / lr
        if f1 > f0:  # the loss rose: gradient d, SGD moves to x - lr d
            rises += 1
            assert torch.allclose(w.grad, d, atol=1e-12)
            x = x - lr * d
            assert torch.allclose(w.detach(), x, atol=1e-15)
            x = w.detach().clone()
        else:  # gradient -d: SGD lands exactly on the tried point
            assert torch.allclose(w.grad, -d, atol=1e-12)
            x = x_try
            assert torch.equal(w.detach(), x)
    assert 0 < rises < 40
    assert opt.nfev == 80


def test_rademacher_perturbation_entries() -> None:
    w = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    log: list = []
    RandomGrad([w], lr=0.25, distribution="rademacher", seed=1).step(recording_closure(w, log))
    assert sorted(set((log[1][0] / 0.25).abs().tolist())) == [1.0]


def test_best_of_k_picks_the_best_trial() -> None:
    lr = 0.1
    w = X0.clone().requires_grad_(True)
    opt = RandomGrad([w], lr=lr, best_of=4, seed=3)
    x = X0.clone()
    for _ in range(10):
        log: list = []
        opt.step(recording_closure(w, log))
        assert len(log) == 5
        f0 = log[0][1]
        x_best, f_best = min(log[1:], key=lambda t: t[1])
        d = (x_best - x) / lr
        if f_best > f0:
            assert torch.allclose(w.grad, d, atol=1e-12)
        else:
            assert torch.equal(w.detach(), x_best)
        x = w.detach().clone()
    assert opt.nfev == 50


def test_inner_optimizer_receives_the_signed_perturbation() -> None:
    a = X0.clone().requires_grad_(True)
    b = X0.clone().requires_grad_(True)
    opt_a = RandomGrad([a], lr=1e-3, seed=5, opt=lambda p: torch.optim.AdamW(p, lr=1e-2))
    opt_b = RandomGrad([b], lr=1e-3, seed=5)
    adamw = torch.optim.AdamW([b], lr=1e-2)
    for _ in range(20):
        log: list = []
        opt_a.step(recording_closure(a, log))
        # the same rule without inner optimizer, then undo its SGD move and let AdamW step
        before = b.detach().clone()
        opt_b.step(lambda backward=True: rosen(b))
        with torch.no_grad():
            b.copy_(before)
        adamw.step()
        assert torch.equal(a, b)


def test_per_group_lr_and_complex() -> None:
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    z = torch.zeros(2, dtype=torch.complex128, requires_grad=True)
    log: list = []

    def closure(backward: bool = True) -> torch.Tensor:
        log.append((a.detach().clone(), z.detach().clone()))
        return (a - 1).pow(2).sum() + (z - 1j).abs().pow(2).sum()

    RandomGrad([{"params": [a], "lr": 1e-2}, {"params": [z], "lr": 1.0}], distribution="rademacher", seed=0).step(
        closure
    )
    assert torch.allclose(log[1][0].abs(), torch.full((3,), 1e-2, dtype=torch.float64))
    assert torch.allclose(torch.view_as_real(log[1][1]).abs(), torch.ones(2, 2, dtype=torch.float64))


def test_state_dict_round_trip() -> None:
    def make(w):
        return RandomGrad([w], lr=1e-2, best_of=2, seed=7, opt=lambda p: torch.optim.Adam(p, lr=1e-2))

    w = X0.clone().requires_grad_(True)
    opt = make(w)
    for _ in range(5):
        opt.step(lambda backward=True: rosen(w))
    saved_w, saved = w.detach().clone(), opt.state_dict()
    for _ in range(5):
        opt.step(lambda backward=True: rosen(w))
    w2 = saved_w.clone().requires_grad_(True)
    opt2 = make(w2)
    opt2.load_state_dict(saved)
    for _ in range(5):
        opt2.step(lambda backward=True: rosen(w2))
    assert torch.equal(w, w2) and opt2.nfev == opt.nfev


def test_nonfinite_handling() -> None:
    w = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    with pytest.warns(tzb.NonFiniteLossWarning, match="no update was applied"):
        RandomGrad([w], lr=0.1, seed=0).step(lambda backward=True: torch.tensor(float("nan")))
    assert torch.equal(w, torch.ones(2, dtype=torch.float64))
    # a non-finite trial counts as a rise: the step goes away from it
    log: list = []

    def closure(backward: bool = True) -> torch.Tensor:
        log.append(w.detach().clone())
        return torch.tensor(float("inf")) if len(log) % 2 == 0 else (w**2).sum()

    RandomGrad([w], lr=0.1, seed=0).step(closure)
    assert torch.allclose(w.detach() - 1.0, -(log[1] - 1.0))


def test_errors() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="lr expected a finite number > 0"):
        RandomGrad([w], lr=0)
    with pytest.raises(ValueError, match="best_of expected an int >= 1"):
        RandomGrad([w], best_of=0)
    with pytest.raises(ValueError, match="distribution expected one of"):
        RandomGrad([w], distribution="laplace")
    with pytest.raises(TypeError, match="needs a closure"):
        RandomGrad([w]).step()
    with pytest.raises(ValueError, match=r"opt \(AdamW\) was constructed over other tensors.*shape \(3,\)"):
        RandomGrad([w], opt=torch.optim.AdamW([torch.zeros(3, requires_grad=True)]))
    with pytest.raises(TypeError, match=r"RandomGrad: opt \(LBFGS\) needs a closure in step\(\)"):
        RandomGrad([w], opt=torch.optim.LBFGS([w]))
    with pytest.raises(TypeError, match=r"RandomGrad: opt \(LBFGS\) needs a closure in step\(\)"):
        RandomGrad([w], opt=lambda p: torch.optim.LBFGS(p))
    with pytest.raises(TypeError, match=r"has dtype torch\.int32"):
        RandomGrad([torch.zeros(2, dtype=torch.int32)])
