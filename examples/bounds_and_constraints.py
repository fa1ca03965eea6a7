"""Bounds per parameter group and constraints written in torch.

Run:  python examples/bounds_and_constraints.py

Fit a mixture of two Gaussians' weights and means to a histogram: the weights are
non-negative (per-group bounds) and sum to one (a torch equality constraint with an exact
Jacobian), and the means stay ordered (a torch inequality constraint).
"""

from __future__ import annotations

import math

import torch

import torchzero_bridge as tzb

torch.set_num_threads(1)
grid = torch.linspace(-5, 5, 201, dtype=torch.float64)


def mixture(w: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    dens = torch.exp(-0.5 * (grid[:, None] - mu) ** 2) / math.sqrt(2 * math.pi)
    return dens @ w


target = mixture(torch.tensor([0.3, 0.7], dtype=torch.float64), torch.tensor([-1.5, 2.0], dtype=torch.float64))

w = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
mu = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)  # starts in the wrong order
constraints = [
    {"type": "eq", "fun": lambda: w.sum() - 1.0},
    {"type": "ineq", "fun": lambda: mu[1] - mu[0] - 0.1},
]
for method in ("SLSQP", "trust-constr", "COBYQA"):
    with torch.no_grad():
        w.copy_(torch.tensor([0.5, 0.5]))
        mu.copy_(torch.tensor([1.0, -1.0]))
    opt = tzb.MinimizeWrapper(
        [{"params": [w], "bounds": (0.0, 1.0)}, {"params": [mu]}],
        method=method,
        constraints=constraints,
    )

    def closure(backward: bool = True) -> torch.Tensor:
        w.grad = mu.grad = None
        loss = ((mixture(w, mu) - target) ** 2).sum()
        if backward:
            loss.backward()
        return loss

    loss = float(opt.step(closure))
    print(f"{method:12s} loss {loss:.2e}  weights {w.detach().numpy().round(4)}  means {mu.detach().numpy().round(4)}")
    w_, mu_ = w.detach(), mu.detach()
    assert abs(float(w_.sum()) - 1.0) < 1e-6 and float(w_.min()) >= 0.0 and float(mu_[1] - mu_[0]) >= 0.1 - 1e-6
    assert loss < 1e-5, f"{method} stopped at a local minimum"
