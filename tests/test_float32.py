"""A float32 MLP on a real dataset fits with every minimize method, as well as the float64 run."""

from __future__ import annotations

import warnings

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.scipy.methods import METHODS

sklearn = pytest.importorskip("sklearn.datasets")


def _data():
    X, y = sklearn.load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return X[:, [0, 1, 7, 20]], y  # mean radius, texture, concave points, worst radius


def _fit(method: str, dtype: torch.dtype, warm_start: bool) -> tuple[float, torch.nn.Module]:
    Xn, yn = _data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).to(dtype)
    X = torch.tensor(Xn, dtype=dtype)
    y = torch.tensor(yn, dtype=dtype)[:, None]

    def make_closure(opt):
        def closure(backward: bool = True) -> torch.Tensor:
            opt.zero_grad()
            logits = model(X)
            assert logits.dtype == dtype  # the closure sees the model's own dtype
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            loss = loss + 1e-2 * sum((p**2).sum() for p in model.parameters())
            if backward:
                loss.backward()
            return loss

        return closure

    if warm_start:
        pre = tzb.MinimizeWrapper(model.parameters(), method="L-BFGS-B", options={"maxiter": 15})
        pre.step(make_closure(pre))
    opt = tzb.MinimizeWrapper(model.parameters(), method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's own precision-loss notes on float32
        loss = float(opt.step(make_closure(opt)))
    assert all(p.dtype == dtype for p in model.parameters())
    return loss, model


OPTIMUM = 0.221272  # the regularised loss every converging method reaches in float64


@pytest.mark.parametrize("method", [m.name for m in METHODS.values()])
def test_float32_mlp_fits_like_float64(method: str) -> None:
    # dogleg needs a positive definite Hessian at every iterate; the random start has none,
    # so both runs begin from 15 L-BFGS-B iterations.
    warm = method == "dogleg"
    f64, _ = _fit(method, torch.float64, warm)
    f32, _ = _fit(method, torch.float32, warm)
    assert abs(f32 - f64) <= 0.01 * f64
    if method != "Nelder-Mead":  # Nelder-Mead stops at its 200*n evaluation limit on 19 parameters
        assert f32 == pytest.approx(OPTIMUM, rel=1e-2)


@pytest.mark.parametrize("jac", [False, "2-point", "3-point"])
def test_float32_finite_differences_use_a_step_that_survives_rounding(jac) -> None:
    """scipy's default relative step (~1.5e-8) vanishes in float32; ours is scaled to float32's eps."""
    Xn, yn = _data()
    X = torch.tensor(Xn, dtype=torch.float32)
    y = torch.tensor(yn, dtype=torch.float32)
    w = torch.zeros(4, dtype=torch.float32, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="L-BFGS-B", jac=jac)

    def closure(backward: bool = True) -> torch.Tensor:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w, y) + 1e-2 * (w**2).sum()
        return loss

    loss = float(opt.step(closure))
    w64 = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    ref = tzb.MinimizeWrapper([w64], method="L-BFGS-B")

    def closure64(backward: bool = True) -> torch.Tensor:
        ref.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            torch.tensor(Xn) @ w64, torch.tensor(yn, dtype=torch.float64)
        )
        loss = loss + 1e-2 * (w64**2).sum()
        if backward:
            loss.backward()
        return loss

    best = float(ref.step(closure64))
    assert loss == pytest.approx(best, rel=1e-3)
    assert opt.result.njev > 0  # scipy's own count of its finite-difference gradients (the closure has no backward)
