"""MomentumToBest against a hand-written loop: x <- sgd(x) + pull * (best - x), no extra evaluation."""

from __future__ import annotations

import math

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.errors import NonFiniteLossWarning


def _rosen(x: torch.Tensor) -> torch.Tensor:
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def test_matches_a_hand_written_loop_and_adds_no_evaluation() -> None:
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MomentumToBest([x], lambda p: torch.optim.SGD(p, lr=2e-3), pull=0.3)
    calls = [0]

    def closure(backward: bool = True) -> torch.Tensor:
        calls[0] += 1
        opt.zero_grad()
        loss = _rosen(x)
        if backward:
            loss.backward()
        return loss

    y = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    sgd = torch.optim.SGD([y], lr=2e-3)
    best, best_f = None, math.inf
    pulled = 0
    for _ in range(200):
        loss = opt.step(closure)
        y0 = y.detach().clone()
        sgd.zero_grad()
        f = _rosen(y)
        f.backward()
        sgd.step()
        if float(f.detach()) < best_f:
            best, best_f = y0, float(f.detach())
        else:
            with torch.no_grad():
                y.add_(best - y0, alpha=0.3)
            pulled += 1
        assert float(loss) == float(f.detach())
        assert torch.equal(x, y)
    assert pulled >= 10, "lr 2e-3 on Rosenbrock must overshoot sometimes, or no pull was tested"
    assert calls[0] == opt.nfev == 200
    assert opt.best_loss == best_f and torch.equal(opt.best_point()[0], best)


def test_the_pull_points_at_the_best_point() -> None:
    """With the inner step switched off (lr=0) the parameters move straight toward the best point."""
    w = torch.tensor([0.0, 0.0], dtype=torch.float64)
    opt = tzb.MomentumToBest([w], (torch.optim.SGD, {"lr": 0.0}), pull=0.5)
    losses = iter([1.0, 5.0, 7.0, 9.0])

    def closure(backward: bool = True) -> torch.Tensor:
        return torch.tensor(next(losses), dtype=torch.float64)

    opt.step(closure)  # best = (0, 0)
    w.copy_(torch.tensor([4.0, -2.0]))  # the run wanders off (as a user or a scheduler might move it)
    opt.step(closure)
    assert w.tolist() == [2.0, -1.0]
    opt.step(closure)
    assert w.tolist() == [1.0, -0.5]


def test_nonfinite_loss_leaves_the_start_point() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MomentumToBest([w], (torch.optim.SGD, {"lr": 0.1}))

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum() * math.nan
        if backward:
            loss.backward()
        return loss

    with pytest.warns(NonFiniteLossWarning):
        opt.step(closure)
    assert w.tolist() == [1.0, 2.0]


def test_per_group_pull_and_errors() -> None:
    a = torch.zeros(1, dtype=torch.float64)
    b = torch.zeros(1, dtype=torch.float64)
    opt = tzb.MomentumToBest([{"params": [a], "pull": 1.0}, {"params": [b]}], (torch.optim.SGD, {"lr": 0.0}), pull=0.25)
    losses = iter([1.0, 2.0])
    opt.step(lambda backward=True: torch.tensor(next(losses)))
    a.fill_(4.0)
    b.fill_(4.0)
    opt.step(lambda backward=True: torch.tensor(next(losses)))
    assert (a.item(), b.item()) == (0.0, 3.0)
    assert "pull" not in opt.opt.param_groups[0]  # the wrapper's option does not reach SGD
    with pytest.raises(ValueError, match="pull"):
        tzb.MomentumToBest([a], (torch.optim.SGD, {"lr": 0.1}), pull=0.0)
