"""Counters mean what scipy means, and global solvers run backward passes only where asked.

* ``result.njev`` is the number of gradients the solver asked for: scipy's own count for
  finite differences, the estimator calls for a gradient estimator, the exact gradients
  requested — checked against scipy run directly on the same torch function.
* After a stop (timeout or callback), ``result.nit`` is the number of iterations that ran.
* Dual annealing and SHGO run a backward pass only for the gradients their local searches ask
  for (counted in the closure), not at every annealing visit or sampling point.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.optimize as so
import torch
from closures import counting_closure

import torchzero_bridge as tzb
from torchzero_bridge.testing import Rosenbrock
from torchzero_bridge.testing.global_functions import GLOBAL_FUNCTIONS
from torchzero_bridge.zeroth_order import FDM

X0 = np.array([-1.1, 2.5, 0.3, -0.7])
EPS = np.finfo(np.float64).eps


def torch_fun(model_at):
    """The same torch function as plain numpy callables (bitwise the values the wrapper sees)."""

    def fun(x: np.ndarray) -> float:
        return float(model_at(x)().detach())

    def grad(x: np.ndarray) -> np.ndarray:
        m = model_at(x)
        m().backward()
        return torch.cat([p.grad.reshape(-1) for p in m.parameters()]).numpy()

    return fun, grad


def rosen_at(x: np.ndarray) -> Rosenbrock:
    return Rosenbrock(x[:2], x[2:])


# ---------------------------------------------------------------------- njev
@pytest.mark.parametrize("jac", ["2-point", "3-point"])
@pytest.mark.parametrize("method", ["BFGS", "L-BFGS-B"])
def test_njev_with_scipy_finite_differences_is_scipys(jac: str, method: str) -> None:
    fun, _ = torch_fun(rosen_at)
    ref = so.minimize(fun, X0, method=method, jac=jac)
    model = rosen_at(X0)
    opt = tzb.MinimizeWrapper(model.parameters(), method=method, jac=jac)
    opt.step(counting_closure(model, {}))
    assert opt.result.nit == ref.nit
    assert opt.result.njev == ref.njev > 0


def test_njev_with_a_gradient_estimator_counts_its_gradients() -> None:
    ref = so.minimize(so.rosen, X0, method="BFGS", jac="3-point")
    model = rosen_at(X0)
    calls: dict[str, int] = {}
    opt = tzb.MinimizeWrapper(model.parameters(), method="BFGS", jac=FDM(formula="central3", h=EPS ** (1 / 3)))
    opt.step(counting_closure(model, calls))
    assert opt.result.nit == ref.nit
    assert opt.result.njev == ref.njev > 0, "one estimated gradient per gradient scipy's own run computed"
    assert calls.get("backward", 0) == 0


def test_njev_with_exact_gradients_is_what_scipy_asked_for() -> None:
    fun, grad = torch_fun(rosen_at)
    ref = so.minimize(fun, X0, method="L-BFGS-B", jac=grad)
    model = rosen_at(X0)
    calls: dict[str, int] = {}
    opt = tzb.MinimizeWrapper(model.parameters(), method="L-BFGS-B")
    opt.step(counting_closure(model, calls))
    assert opt.result.njev == ref.njev == calls["backward"]


# ---------------------------------------------------------------------- nit after a stop
METHODS = ["BFGS", "L-BFGS-B", "trust-krylov", tzb.newton_cg_armijo]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m if isinstance(m, str) else m.__name__)
def test_nit_after_a_callback_stop_is_the_iterations_that_ran(method) -> None:
    model = rosen_at(X0)
    seen = []

    def stop_at_five(res: so.OptimizeResult) -> bool:
        seen.append(res.fun)
        return len(seen) == 5

    opt = tzb.MinimizeWrapper(model.parameters(), method=method, callback=stop_at_five)
    opt.step(counting_closure(model, {}))
    assert opt.result.success is False and opt.result.nit == 5


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m if isinstance(m, str) else m.__name__)
def test_nit_after_a_timeout_is_the_iterations_that_ran(method) -> None:
    model = rosen_at(X0)
    inner = counting_closure(model, calls := {})
    iterations = []

    def slow(backward: bool = True) -> torch.Tensor:
        if calls.get("n", 0) >= 12:
            time.sleep(0.3)  # from the 13th run on, each run outlasts the timeout
        return inner(backward)

    opt = tzb.MinimizeWrapper(model.parameters(), method=method, timeout=0.2, callback=iterations.append)
    opt.step(slow)
    assert "timeout" in opt.result.message
    # the iterations that completed: each one called back, except possibly the one the
    # deadline stopped inside its callback
    assert 0 < len(iterations) <= opt.result.nit <= len(iterations) + 1


# ---------------------------------------------------------------------- backward passes in global solvers
def test_dual_annealing_runs_backward_only_for_requested_gradients() -> None:
    spec = GLOBAL_FUNCTIONS["rastrigin"]
    model = spec.module.at([2.0, -1.5, 3.0])
    calls: dict[str, int] = {}
    opt = tzb.DualAnnealingWrapper(model.parameters(), bounds=spec.bounds(3), rng=0, maxiter=100)
    opt.step(counting_closure(model, calls))
    # scipy's default local search (L-BFGS-B in the box, maxiter 100) with the analytic gradient
    local = {"method": "L-BFGS-B", "jac": spec.grad, "bounds": spec.bounds(3), "options": {"maxiter": 100}}
    ref = so.dual_annealing(spec.fun, spec.bounds(3), rng=0, maxiter=100, x0=[2.0, -1.5, 3.0], minimizer_kwargs=local)
    res = opt.result
    np.testing.assert_allclose(res.x, ref.x, atol=1e-8)
    # one backward pass per gradient the local searches asked for (scipy's own njev) ...
    assert calls["backward"] == res.njev == ref.njev > 0
    assert res.njev < 0.1 * res.nfev, "... and none at the annealing visits"


def test_shgo_sampling_points_are_value_only() -> None:
    spec = GLOBAL_FUNCTIONS["six_hump_camel"]
    model = spec.module.at([0.5, 0.5])
    calls: dict[str, int] = {}
    opt = tzb.SHGOWrapper(model.parameters(), bounds=spec.bounds(2), n=64, sampling_method="sobol")
    opt.step(counting_closure(model, calls))
    grads = []

    def jac(x: np.ndarray) -> np.ndarray:
        grads.append(1)
        return spec.grad(x)

    local = {"method": "SLSQP", "jac": jac, "options": {"ftol": 1e-12}}
    ref = so.shgo(spec.fun, spec.bounds(2), n=64, sampling_method="sobol", minimizer_kwargs=local)
    np.testing.assert_allclose(opt.result.x, ref.x, atol=1e-8)
    assert opt.result.njev == len(grads) == ref.nljev > 0
    # a local search computes the gradient with each value (SLSQP asks for most of them);
    # the sampling points get none
    assert calls["backward"] <= ref.nlfev
    assert calls["n"] - calls["backward"] >= 64


# ---------------------------------------------------------------------- bounds in local searches
class Bowl(torch.nn.Module):
    """A bowl centred at (3, -3), outside the box [-1, 1]^2; the closure logs every point."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.5, 0.5], dtype=torch.float64))
        self.log: list[np.ndarray] = []

    def forward(self) -> torch.Tensor:
        self.log.append(self.w.detach().numpy().copy())
        return ((self.w - torch.tensor([3.0, -3.0], dtype=torch.float64)) ** 2).sum() + torch.cos(5 * self.w).sum()


@pytest.mark.parametrize("local", [None, {"method": "SLSQP"}, {"method": "L-BFGS-B"}, {"method": "Powell"}])
def test_dual_annealing_local_searches_stay_in_per_group_bounds(local) -> None:
    model = Bowl()
    opt = tzb.DualAnnealingWrapper([{"params": [model.w], "bounds": (-1.0, 1.0)}], local, rng=0, maxiter=20)
    opt.step(counting_closure(model, {}))
    pts = np.array(model.log)
    assert len(pts) > 50 and (np.abs(pts) <= 1.0).all()


def test_local_bounds_in_minimizer_args_with_per_group_bounds() -> None:
    model = Bowl()
    local = {"method": "SLSQP", "bounds": [(-0.5, 0.5), (-0.5, 0.5)]}
    opt = tzb.DualAnnealingWrapper([{"params": [model.w], "bounds": (-1.0, 1.0)}], local, rng=0, maxiter=10)
    opt.step(counting_closure(model, {}))
    assert (np.abs(np.array(model.log)) <= 1.0).all()
    model = Bowl()
    opt = tzb.BasinHoppingWrapper([{"params": [model.w], "bounds": (-1.0, 1.0)}], local, niter=3, rng=0)
    opt.step(counting_closure(model, {}))
    assert (np.abs(np.array(model.log)) <= 0.5).all(), "the local box of minimizer_args wins"


def test_local_method_without_bounds_warns() -> None:
    model = Bowl()
    with pytest.warns(tzb.IgnoredOptionWarning, match="BFGS cannot handle bounds"):
        tzb.DualAnnealingWrapper([{"params": [model.w], "bounds": (-1.0, 1.0)}], {"method": "BFGS"})
    with pytest.warns(tzb.IgnoredOptionWarning, match="trust-ncg cannot handle bounds"):
        tzb.SHGOWrapper([{"params": [model.w], "bounds": (-1.0, 1.0)}], {"method": "trust-ncg"})


def test_malformed_local_bounds_fail_at_construction() -> None:
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"minimizer_args\['bounds'\]: bounds: expected 2"):
        tzb.DualAnnealingWrapper([{"params": [w], "bounds": (-1, 1)}], {"method": "SLSQP", "bounds": [(0, 1)]})
    with pytest.raises(ValueError, match=r"minimizer_args\['bounds'\]: lower bound 1.0 is above"):
        tzb.BasinHoppingWrapper([w], {"method": "L-BFGS-B", "bounds": [(1, 0), (0, 1)]})
