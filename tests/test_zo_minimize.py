"""Gradient estimators as MinimizeWrapper's jac: scipy's own runs reproduced, zeroth-order Newton-CG."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so
import torch
from closures import counting_closure

import torchzero_bridge as tzb
from torchzero_bridge.testing import Rosenbrock
from torchzero_bridge.zeroth_order import FDM, SPSA, MeZO

EPS = np.finfo(np.float64).eps
X0 = np.array([-1.1, 2.5, 0.3, -0.7])


@pytest.mark.parametrize("method", ["BFGS", "L-BFGS-B", "CG"])
@pytest.mark.parametrize(
    ("scipy_jac", "estimator"),
    [
        ("2-point", lambda: FDM(formula="forward2", h=EPS**0.5, relative=True)),
        ("3-point", lambda: FDM(formula="central3", h=EPS ** (1 / 3), relative=True)),
    ],
    ids=["2-point", "3-point"],
)
def test_fdm_jac_reproduces_scipy_finite_differences(method: str, scipy_jac: str, estimator) -> None:
    ref = so.minimize(so.rosen, X0, method=method, jac=scipy_jac)
    model = Rosenbrock(X0[:2], X0[2:])  # two tensors: the flat vector spans both
    calls: dict = {}
    opt = tzb.MinimizeWrapper(model.parameters(), method=method, jac=estimator())
    loss = opt.step(counting_closure(model, calls))
    res = opt.result
    assert res.nit == ref.nit
    # f(x) is reused like scipy does; a gradient asked for again at one of the two latest
    # points comes from the estimator's cache, where scipy recomputes it
    assert res.nfev == calls["n"] <= ref.nfev
    assert np.allclose(res.x, ref.x, rtol=0, atol=1e-12)
    assert loss.item() == pytest.approx(ref.fun, rel=1e-12)
    assert calls.get("backward", 0) == 0


@pytest.mark.parametrize("hvp_method", ["central", "forward"])
def test_zeroth_order_newton_cg(hvp_method: str) -> None:
    model = Rosenbrock([-1.1, 2.5])
    calls: dict = {}
    opt = tzb.MinimizeWrapper(
        model.parameters(), method="Newton-CG", jac=FDM(formula="central3", h=1e-5), hvp_method=hvp_method
    )
    loss = opt.step(counting_closure(model, calls))
    res = opt.result
    assert calls.get("backward", 0) == 0  # no backward pass anywhere
    assert res.nhev > 0 and res.nfev == calls["n"]
    assert loss.item() < 1e-9
    assert np.allclose(res.x, [1.0, 1.0], atol=1e-4)


def test_hessp_differences_estimator_gradients() -> None:
    # 2-D quadratic: central3 gradients are exact up to rounding, so the products are the Hessian
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    w = torch.tensor([0.5, -0.2], dtype=torch.float64, requires_grad=True)
    At = torch.tensor(A)
    opt = tzb.MinimizeWrapper([w], method="trust-ncg", jac=FDM(formula="central3", h=1e-3), hvp_method="central")

    def closure(backward: bool = True) -> torch.Tensor:
        assert not backward
        return 0.5 * w @ At @ w - w.sum()

    opt.step(closure)
    assert np.allclose(opt.result.x, np.linalg.solve(A, [1.0, 1.0]), atol=1e-8)
    assert opt.result.nhev > 0


def test_estimator_hvp_with_autograd_keeps_scipy_default() -> None:
    # hvp_method="autograd" with an estimator jac: scipy's own finite differences of jac
    model = Rosenbrock([-1.1, 2.5])
    calls: dict = {}
    opt = tzb.MinimizeWrapper(model.parameters(), method="Newton-CG", jac=FDM(formula="central3", h=1e-5))
    opt.step(counting_closure(model, calls))
    assert calls.get("backward", 0) == 0 and opt.result.nhev == 0


@pytest.mark.parametrize("make", [lambda: SPSA(h=1e-4, n_samples=8, seed=0), lambda: MeZO(h=1e-4, n_samples=8, seed=0)])
def test_randomized_estimators_as_jac(make) -> None:
    w = torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="L-BFGS-B", jac=make(), options={"maxiter": 200})
    calls: dict = {}

    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] = calls.get("n", 0) + 1
        return ((w - 0.5) ** 2).sum()

    opt.step(closure)
    assert opt.result.nfev == calls["n"]
    assert float(((w.detach() - 0.5) ** 2).sum()) < 1e-3


def test_per_group_h_in_wrapper_groups() -> None:
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    fdm = FDM(formula="forward2", h=1e-6)
    opt = tzb.MinimizeWrapper([{"params": [a], "h": 1e-1}, {"params": [b]}], method="BFGS", jac=fdm)
    flat = opt.flat_params()
    obj = tzb.Objective(flat, lambda backward=True: (a**2).sum() + (b**2).sum())
    g = fdm.make_scipy_jac(obj)(np.array([1.0, 1.0]))
    assert g == pytest.approx([2.1, 2.0], abs=1e-5)


def test_jac_counts_through_objective_and_caches() -> None:
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([w])
    obj = tzb.Objective(flat, lambda backward=True: (w**3).sum(), gradient_estimator=FDM(formula="forward2", h=1e-7))
    jac = obj.gradient_source  # the estimator's jac behind the objective's memo of its two latest gradients
    assert jac is not None
    x = np.array([1.0, 2.0, 3.0])
    obj.value(x)  # the solver's own f(x)
    g = jac(x)
    assert obj.nfev == 4  # 1 + n, f(x) reused
    assert np.allclose(g, 3 * x**2, rtol=1e-5)
    jac(x)
    assert obj.nfev == 4  # cached at the same x
    assert obj.best_f == pytest.approx(36.0)


@pytest.mark.parametrize(("hvp_method", "runs_per_column"), [("forward", 6), ("central", 12)])
def test_objective_hess_from_gradient_source(hvp_method: str, runs_per_column: int) -> None:
    w = torch.tensor([0.3, -0.5, 1.2], dtype=torch.float64, requires_grad=True)
    f = lambda x: (torch.sin(x) * x.roll(1)).sum() + (x**4).sum()  # noqa: E731
    H_true = torch.autograd.functional.hessian(f, w.detach())
    obj = tzb.Objective(
        tzb.FlatParams([w]),
        lambda backward=True: f(w),
        hvp_method=hvp_method,
        gradient_estimator=FDM(formula="central3", h=1e-4),
    )
    assert obj.gradient_source is not None
    x = w.detach().numpy().copy()
    obj.gradient_source(x)  # the solver's gradient at x: 2n runs
    assert obj.nfev == 6
    H = obj.hess(x)
    # forward: g(x) stays cached, one probe (2n runs) per column; central: two probes per column
    assert obj.nfev == 6 + 3 * runs_per_column
    assert np.allclose(H, H_true.numpy(), atol=1e-3)  # differences of finite differences
