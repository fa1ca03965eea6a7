"""Large single-tensor models, where gradients are handed to scipy without a copy.

The answers must equal scipy run directly on the same problem in numpy, whatever the closure
does with its gradient tensors: a fresh one per backward pass (handed over), or one buffer it
reuses and overwrites in place (copied, so no array scipy holds ever changes).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

import torchzero_bridge as tzb

N = 1 << 16
RNG = np.random.default_rng(0)
D = RNG.uniform(0.5, 4.0, N)  # a separable, ill-conditioned quartic-plus-quadratic
B = RNG.normal(size=N)


def f_np(x: np.ndarray) -> tuple[float, np.ndarray]:
    return float(0.5 * D @ x**2 + 0.25 * np.sum(x**4) - B @ x), D * x + x**3 - B


def make(mode: str) -> tuple[torch.Tensor, object]:
    w = torch.zeros(N, dtype=torch.float64, requires_grad=True)
    d, b = torch.from_numpy(D), torch.from_numpy(B)
    buffer = torch.empty(N, dtype=torch.float64)

    def closure(backward: bool = True) -> torch.Tensor:
        loss = 0.5 * (d * w**2).sum() + 0.25 * (w**4).sum() - (b * w).sum()
        if backward:
            if mode == "fresh":
                w.grad = None
                loss.backward()
            else:  # the same tensor every time, overwritten in place
                with torch.no_grad():
                    buffer.copy_(d * w + w**3 - b)
                w.grad = buffer
        return loss

    return w, closure


@pytest.mark.parametrize("mode", ["fresh", "reused buffer"])
@pytest.mark.parametrize("method", ["L-BFGS-B", "CG"])
def test_large_single_tensor_matches_scipy_on_numpy(method: str, mode: str) -> None:
    options = {"maxiter": 15}
    ref = scipy.optimize.minimize(f_np, np.zeros(N), jac=True, method=method, options=options)
    w, closure = make(mode)
    opt = tzb.MinimizeWrapper([w], method=method, options=options)
    opt.step(closure)
    assert opt.result.nit == ref.nit
    np.testing.assert_allclose(w.detach().numpy(), ref.x, rtol=0, atol=1e-8)
    np.testing.assert_allclose(w.grad.numpy(), f_np(ref.x)[1], rtol=0, atol=1e-8)


def test_objective_hands_over_fresh_gradients_and_copies_reused_ones() -> None:
    addresses: list[int] = []
    for mode in ("fresh", "reused buffer"):
        w, closure = make(mode)

        def spy(backward: bool = True, closure=closure, w=w) -> torch.Tensor:
            loss = closure(backward)
            if backward:
                addresses.append(w.grad.data_ptr())
            return loss

        obj = tzb.Objective(tzb.FlatParams([w]), spy)
        gs = [obj.grad(np.full(N, float(i))) for i in range(3)]
        for i, g in enumerate(gs):  # every array keeps its own point's gradient
            np.testing.assert_allclose(g, f_np(np.full(N, float(i)))[1], rtol=1e-12, atol=1e-12)
        shared = [g.ctypes.data == a for g, a in zip(gs, addresses[-3:])]
        assert shared == ([True] * 3 if mode == "fresh" else [False] * 3)
