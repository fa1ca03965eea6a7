"""Each global wrapper, with a fixed seed, reproduces the same scipy solver run directly on the
numpy version of the same function: same x, same fun, same number of evaluations.

The scipy side gets the analytic numpy gradient, the wrapper autograd gradients, so both
local searches use exact derivatives. ``nfev`` is compared with the number of *distinct*
consecutive points scipy asked for: the wrapper's memo answers a repeated request for the
point it has just evaluated without running the closure again (scipy counts it twice).
Global searches evaluate values only; a local search that starts at a point whose value alone
is known runs the closure once more there for its gradient (at most once per local search).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from scipy import optimize as so

import torchzero_bridge as tzb
from torchzero_bridge.testing.global_functions import GLOBAL_FUNCTIONS, CountedFunction, GlobalProblem

NAMES = list(GLOBAL_FUNCTIONS)


def dims(name: str) -> int:
    return 2 if GLOBAL_FUNCTIONS[name].dims else 3


def start(name: str) -> np.ndarray:
    box = np.array(GLOBAL_FUNCTIONS[name].bounds(dims(name)))
    return 0.3 * box[:, 0] + 0.1 * box[:, 1]


def problem(name: str) -> tuple[GlobalProblem, Callable[..., torch.Tensor]]:
    model = GLOBAL_FUNCTIONS[name].module.at(start(name))

    def closure(backward: bool = True) -> torch.Tensor:
        for p in model.parameters():
            p.grad = None
        loss = model()
        if backward:
            loss.backward()
        return loss

    return model, closure


def grouped(model: GlobalProblem, name: str) -> list[dict[str, Any]]:
    """One param group with per-tensor bounds (a list with one tensor per parameter)."""
    box = np.array(GLOBAL_FUNCTIONS[name].bounds(dims(name)))
    params = list(model.parameters())
    lo, hi, k = [], [], 0
    for p in params:
        lo.append(torch.as_tensor(box[k : k + p.numel(), 0]).reshape(p.shape))
        hi.append(torch.as_tensor(box[k : k + p.numel(), 1]).reshape(p.shape))
        k += p.numel()
    return [{"params": params, "bounds": (lo, hi)}]


def assert_same_run(
    opt: tzb.BridgeOptimizer,
    model: GlobalProblem,
    ref: so.OptimizeResult,
    counted: CountedFunction,
    local_searches: int = 0,
) -> None:
    res = opt.result
    assert res is not None
    scale = max(1.0, float(np.abs(ref.x).max()))
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-6 * scale)
    assert res.fun == pytest.approx(float(ref.fun), rel=1e-9, abs=1e-12)
    assert counted.calls == ref.nfev, "scipy's own count of the reference run"
    assert counted.unique <= res.nfev <= counted.distinct + local_searches
    np.testing.assert_array_equal(model.vector().detach().numpy(), res.x)


def assert_global_if_scipy_got_it(name: str, ref: so.OptimizeResult, res: so.OptimizeResult) -> bool:
    spec = GLOBAL_FUNCTIONS[name]
    n = dims(name)
    tol = 1e-6 * max(1.0, abs(spec.minimum(n)))
    if abs(float(ref.fun) - spec.minimum(n)) > tol:
        return False
    assert abs(float(res.fun) - spec.minimum(n)) <= tol
    assert np.min(np.abs(spec.argmins(n) - res.x).max(axis=1)) < 1e-3 * max(1.0, float(np.abs(res.x).max()))
    return True


# Pinned: where these exact runs reach the global minimum (scipy and wrapper alike).
REACHES = {
    "de": {"rastrigin", "ackley", "styblinski_tang", "six_hump_camel", "levy"},
    "da": {"ackley", "styblinski_tang", "six_hump_camel"},
    "bh": {"ackley", "styblinski_tang", "six_hump_camel", "levy"},
    "shgo": {"rastrigin", "ackley", "styblinski_tang"},
    "direct": {"rastrigin", "ackley", "styblinski_tang", "six_hump_camel", "levy"},
}


@pytest.mark.parametrize("name", NAMES)
def test_differential_evolution_matches_scipy(name: str) -> None:
    spec = GLOBAL_FUNCTIONS[name]
    model, closure = problem(name)
    opt = tzb.DifferentialEvolutionWrapper(grouped(model, name), {"rng": 1, "maxiter": 60})
    opt.step(closure)
    f = CountedFunction(spec.fun)
    polish = functools.partial(so.minimize, method="L-BFGS-B", jac=spec.grad)
    ref = so.differential_evolution(f, spec.bounds(dims(name)), rng=1, maxiter=60, x0=start(name), polish=polish)
    assert_same_run(opt, model, ref, f)
    assert opt.result.njev > 0, "the polish used exact gradients"
    assert assert_global_if_scipy_got_it(name, ref, opt.result) == (name in REACHES["de"])


@pytest.mark.parametrize("name", NAMES)
def test_dual_annealing_matches_scipy(name: str) -> None:
    spec = GLOBAL_FUNCTIONS[name]
    n = dims(name)
    model, closure = problem(name)
    opt = tzb.DualAnnealingWrapper(model.parameters(), None, {"bounds": spec.bounds(n), "rng": 1, "maxiter": 50})
    opt.step(closure)
    f = CountedFunction(spec.fun)
    searches: list[so.OptimizeResult] = []

    def lbfgsb(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None, constraints=(), callback=None, **opts):
        # scipy's L-BFGS-B as a custom method, each local search recorded
        searches.append(so.minimize(fun, x0, args, "L-BFGS-B", jac, bounds=bounds, callback=callback, options=opts))
        return searches[-1]

    local = {"method": lbfgsb, "jac": spec.grad, "bounds": spec.bounds(n), "options": {"maxiter": 100}}
    ref = so.dual_annealing(f, spec.bounds(n), rng=1, maxiter=50, x0=start(name), minimizer_kwargs=local)
    assert_same_run(opt, model, ref, f, local_searches=len(searches))
    # njev: the gradients scipy's local searches asked for (scipy's own count), not one per annealing visit
    assert opt.result.njev == ref.njev == sum(r.njev for r in searches) > 0
    assert assert_global_if_scipy_got_it(name, ref, opt.result) == (name in REACHES["da"])


@pytest.mark.parametrize("name", NAMES)
def test_basinhopping_matches_scipy(name: str) -> None:
    spec = GLOBAL_FUNCTIONS[name]
    n = dims(name)
    model, closure = problem(name)
    opt = tzb.BasinHoppingWrapper(grouped(model, name), None, {"niter": 15, "rng": 1})
    opt.step(closure)
    f = CountedFunction(spec.fun)
    local = {"method": "L-BFGS-B", "jac": spec.grad, "bounds": spec.bounds(n)}
    ref = so.basinhopping(f, start(name), niter=15, rng=1, minimizer_kwargs=local)
    assert_same_run(opt, model, ref, f)
    assert assert_global_if_scipy_got_it(name, ref, opt.result) == (name in REACHES["bh"])


@pytest.mark.parametrize("name", NAMES)
def test_shgo_matches_scipy(name: str) -> None:
    spec = GLOBAL_FUNCTIONS[name]
    n = dims(name)
    model, closure = problem(name)
    opt = tzb.SHGOWrapper(model.parameters(), None, {"bounds": spec.bounds(n)})
    opt.step(closure)
    f = CountedFunction(spec.fun)
    local = {"method": "SLSQP", "jac": spec.grad, "options": {"ftol": 1e-12}}
    ref = so.shgo(f, spec.bounds(n), minimizer_kwargs=local)
    assert_same_run(opt, model, ref, f)
    assert assert_global_if_scipy_got_it(name, ref, opt.result) == (name in REACHES["shgo"])


@pytest.mark.parametrize("name", NAMES)
def test_direct_matches_scipy(name: str) -> None:
    spec = GLOBAL_FUNCTIONS[name]
    model, closure = problem(name)
    opt = tzb.DirectWrapper(grouped(model, name), maxfun=1000)
    opt.step(closure)
    f = CountedFunction(spec.fun)
    ref = so.direct(f, spec.bounds(dims(name)), maxfun=1000)
    assert_same_run(opt, model, ref, f)
    assert opt.result.njev == 0, "DIRECT is derivative-free: no backward pass"
    assert assert_global_if_scipy_got_it(name, ref, opt.result) == (name in REACHES["direct"])


def test_basinhopping_with_hessian_vector_products_matches_scipy() -> None:
    spec = GLOBAL_FUNCTIONS["styblinski_tang"]
    model, closure = problem("styblinski_tang")
    opt = tzb.BasinHoppingWrapper(model.parameters(), {"method": "trust-ncg"}, niter=5, rng=3)
    opt.step(closure)
    f = CountedFunction(spec.fun)
    products = []

    def hessp(x: np.ndarray, p: np.ndarray) -> np.ndarray:
        products.append(1)
        return (6.0 * x**2 - 16.0) * p

    local = {"method": "trust-ncg", "jac": spec.grad, "hessp": hessp}
    ref = so.basinhopping(f, start("styblinski_tang"), niter=5, rng=3, minimizer_kwargs=local)
    assert_same_run(opt, model, ref, f)
    # one autograd product per product scipy asked for, and no extra closure run for them
    assert opt.result.nhev == len(products) > 0
