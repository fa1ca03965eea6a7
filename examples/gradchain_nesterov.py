"""GradChain: Adam on Nesterov-momentum gradients, and a fully zeroth-order chain.

Run:  python examples/gradchain_nesterov.py

``GradChain(params, [SGD(lr=1, momentum=0.9, nesterov=True), Adam(lr)])``: SGD turns each
gradient into a Nesterov-momentum update, which is undone and handed to Adam as its gradient.
The script checks that against the same rule written out by hand. With an SPSA estimator as
the first stage the whole chain runs without backward passes.
"""

from __future__ import annotations

import torch

import torchzero_bridge as tzb
from torchzero_bridge.testing import Rosenbrock

torch.set_num_threads(1)
START, LR, STEPS = ([-1.1], [2.5]), 3e-2, 500


def chained(stages, backward: bool) -> Rosenbrock:
    model = Rosenbrock(*START)
    chain = tzb.GradChain(model.parameters(), stages)

    def closure(backward: bool = backward) -> torch.Tensor:
        chain.zero_grad()
        loss = model()
        if backward:
            loss.backward()
        return loss

    for _ in range(STEPS):
        chain.step(closure)
    return model


def by_hand() -> Rosenbrock:
    """Nesterov momentum buffer, then Adam on the resulting update."""
    model = Rosenbrock(*START)
    adam = torch.optim.Adam(model.parameters(), lr=LR)
    bufs = [torch.zeros_like(p) for p in model.parameters()]
    for _ in range(STEPS):
        adam.zero_grad()
        model().backward()
        for p, b in zip(model.parameters(), bufs):
            b.mul_(0.9).add_(p.grad)
            p.grad = p.grad + 0.9 * b  # the Nesterov update SGD(lr=1) would apply
        adam.step()
    return model


nesterov_adam = chained(
    [lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9, nesterov=True), lambda p: torch.optim.Adam(p, lr=LR)], True
)
reference = by_hand()
gap = float((nesterov_adam.vector() - reference.vector()).detach().abs().max())
print(
    f"Nesterov -> Adam      {STEPS} steps: loss {float(nesterov_adam().detach()):.3e}  (max gap to by-hand {gap:.1e})"
)
assert gap < 1e-6

zeroth = chained([tzb.SPSA(h=1e-3, seed=0), lambda p: torch.optim.Adam(p, lr=LR)], False)
print(f"SPSA -> Adam (no grads) {STEPS} steps: loss {float(zeroth().detach()):.3e}  (from 170.8)")
assert float(zeroth().detach()) < 10.0
