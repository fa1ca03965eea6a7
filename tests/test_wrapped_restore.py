"""The wrappers' error path: back at the step's start, gradients cleared, even when a second
KeyboardInterrupt lands in the middle of putting the start back (as a real SIGINT can)."""

from __future__ import annotations

import pytest
import torch

import torchzero_bridge as tzb

WRAPPERS = {
    "UndoOnRise": lambda p: tzb.UndoOnRise(p, lambda q: torch.optim.SGD(q, lr=0.1)),
    "BestOfLRs": lambda p: tzb.BestOfLRs(p, lambda q: torch.optim.SGD(q, lr=0.1), multipliers=(0.5, 2.0)),
    "MomentumToBest": lambda p: tzb.MomentumToBest(p, lambda q: torch.optim.SGD(q, lr=0.1), pull=0.5),
}


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_an_interrupt_inside_the_restore_still_ends_at_the_start(name: str) -> None:
    a = torch.tensor([1.0, -2.0], requires_grad=True)
    b = torch.tensor([0.5], requires_grad=True)
    opt = WRAPPERS[name]([a, b])
    calls = [0]

    def closure(backward: bool = True) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 4:  # inside the second to fourth step, depending on the wrapper
            raise KeyboardInterrupt
        opt.zero_grad()
        loss = (a**2).sum() + (b**2).sum() * 3
        if backward:
            loss.backward()
        return loss

    opt.step(closure)
    real_put, hits = opt._put, [0]

    def put_then_interrupt(xs: list[torch.Tensor]) -> None:
        hits[0] += 1
        if hits[0] == 1:  # the first tensor is back, then an interrupt lands
            with torch.no_grad():
                a.copy_(xs[0])
            raise KeyboardInterrupt
        real_put(xs)

    opt._put = put_then_interrupt  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        for _ in range(3):
            start = [a.detach().clone(), b.detach().clone()]
            opt.step(closure)
    assert hits[0] >= 2, "the restore was not redone"
    assert torch.equal(a, start[0]) and torch.equal(b, start[1])
    assert a.grad is None and b.grad is None
    assert torch.is_grad_enabled()
