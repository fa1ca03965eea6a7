"""Newton-CG and trust-krylov on an MLP with exact Hessian-vector products.

Run:  python examples/newton_mlp.py

A closure that accepts ``backward`` lets the library keep the autograd graph of each point and
form Hessian-vector products by double backward: one forward/backward per point, one extra
backward per product, and never a dense Hessian.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import torchzero_bridge as tzb

torch.set_num_threads(1)
rng = np.random.default_rng(0)
X = torch.tensor(rng.uniform(-2, 2, size=(400, 2)))
y = torch.sin(X[:, :1]) * torch.cos(X[:, 1:])  # a smooth 2-D regression target


def fit(method: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    opt = tzb.MinimizeWrapper(model.parameters(), method=method, options={"maxiter": 200})

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        if backward:
            loss.backward()
        return loss

    t = time.perf_counter()
    loss = float(opt.step(closure))
    r = opt.result
    print(
        f"{method:12s} loss {loss:.2e}  iterations {r.nit:4d}  closure runs {r.nfev:4d}  "
        f"Hessian-vector products {r.nhev:5d}  {time.perf_counter() - t:.2f} s"
    )
    assert loss < 1e-3


for method in ("Newton-CG", "trust-krylov", "trust-ncg"):
    fit(method)
