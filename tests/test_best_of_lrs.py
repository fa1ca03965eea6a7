"""BestOfLRs against a hand-written loop: same points, same choice, stated evaluation count."""

from __future__ import annotations

import math

import pytest
import torch

import torchzero_bridge as tzb

A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.1]], dtype=torch.float64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def _f(x: torch.Tensor) -> torch.Tensor:
    """An ill-conditioned quadratic: the best lr multiplier changes from step to step."""
    return 0.5 * x @ A @ x - B @ x + 0.1 * (x**4).sum()


MS = (0.25, 1.0, 4.0)


def test_matches_a_hand_written_loop_with_its_evaluation_count() -> None:
    x = torch.tensor([2.0, 1.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.BestOfLRs([x], lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5), multipliers=MS)
    calls = [0]

    def closure(backward: bool = True) -> torch.Tensor:
        calls[0] += 1
        opt.zero_grad()
        loss = _f(x)
        if backward:
            loss.backward()
        return loss

    y = torch.tensor([2.0, 1.0, -1.0], dtype=torch.float64, requires_grad=True)
    sgd = torch.optim.SGD([y], lr=0.05, momentum=0.5)
    chosen = []
    steps = 25
    for _ in range(steps):
        loss = opt.step(closure)
        # by hand: one SGD step, then x0 + m * (x1 - x0) for every m, keep the lowest
        y0 = y.detach().clone()
        sgd.zero_grad()
        _f(y).backward()
        sgd.step()
        with torch.no_grad():
            u = y - y0
            cands = [y0.clone().add_(u, alpha=m) for m in MS]
            fs = [float(_f(c)) for c in cands]
            k = min(range(len(MS)), key=lambda i: (fs[i], i))
            y.copy_(cands[k])
        chosen.append(MS[k])
        assert torch.equal(x, y)
        assert float(loss) == fs[k]
        assert opt.last_multiplier == MS[k]
    assert calls[0] == opt.nfev == steps * (1 + len(MS))  # one SGD closure run + one per multiplier
    assert len(set(chosen)) >= 2, f"every step chose the same multiplier {chosen}: the test proves little"
    assert opt.wins == [chosen.count(m) for m in MS]


def test_keep_start_stays_when_every_multiplier_rises() -> None:
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.BestOfLRs([w], (torch.optim.SGD, {"lr": 5.0}), multipliers=(1.0, 2.0), keep_start=True)

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        if backward:
            loss.backward()
        return loss

    assert float(opt.step(closure)) == 1.0 and w.item() == 1.0 and opt.last_multiplier == 0.0
    plain = tzb.BestOfLRs([w], (torch.optim.SGD, {"lr": 5.0}), multipliers=(1.0, 2.0))
    plain.step(closure)  # without keep_start the best candidate is taken even though it is worse
    assert w.item() == -9.0


def test_all_nonfinite_candidates_leave_the_start() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.BestOfLRs([w], (torch.optim.SGD, {"lr": 0.1}))

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        if not backward:
            loss = loss * math.nan
        else:
            loss.backward()
        return loss

    assert float(opt.step(closure)) == 5.0 and w.tolist() == [1.0, 2.0]


def test_error_in_a_candidate_restores_the_start() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.BestOfLRs([w], (torch.optim.Adam, {"lr": 0.1}))
    n = [0]

    def closure(backward: bool = True) -> torch.Tensor:
        n[0] += 1
        if n[0] == 3:
            raise RuntimeError("boom")
        opt.zero_grad()
        loss = (w**2).sum()
        if backward:
            loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    assert w.tolist() == [1.0, 2.0]


def test_construction_errors() -> None:
    w = torch.zeros(2, requires_grad=True)
    sgd = (torch.optim.SGD, {"lr": 0.1})
    with pytest.raises(ValueError, match="multipliers"):
        tzb.BestOfLRs([w], sgd, multipliers=())
    with pytest.raises(ValueError, match="multipliers"):
        tzb.BestOfLRs([w], sgd, multipliers=(1.0, -2.0))
    with pytest.raises(TypeError, match="multipliers"):
        tzb.BestOfLRs([w], sgd, multipliers=2.0)  # type: ignore[arg-type]
