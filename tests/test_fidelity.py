"""MinimizeWrapper against scipy.optimize.minimize run directly on numpy: same answers, no extra calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, rosen, rosen_der, rosen_hess, rosen_hess_prod

import torchzero_bridge as tzb
from torchzero_bridge.scipy.methods import METHODS, method_info
from torchzero_bridge.testing import Rosenbrock, make_rosenbrock_closure

X0 = np.array([1.2, 1.1, 1.3, 1.5])
ALL_METHODS = [m.name for m in METHODS.values()]


def _reference(method: str, fun, jac, hess, hessp, x0: np.ndarray):
    """scipy on numpy, counting objective calls; derivatives given the way the method uses them."""
    calls = {"f": 0}

    def f(x):
        calls["f"] += 1
        return fun(x)

    info = method_info(method)
    kw = {}
    if info.gradient:
        kw["jac"] = jac
    if info.hess == "hessp":
        kw["hessp"] = hessp
    if info.hess == "dense":
        kw["hess"] = hess
    return minimize(f, x0, method=method, **kw), calls["f"]


def _bridge(method: str, x0: np.ndarray):
    model = Rosenbrock(x0[:2], x0[2:])  # the 4-vector split over two tensors
    opt = tzb.MinimizeWrapper(model.parameters(), {"method": method})
    inner = make_rosenbrock_closure(model, opt.zero_grad)
    runs = {"n": 0}

    def closure(backward: bool = True) -> torch.Tensor:
        runs["n"] += 1
        return inner(backward)

    loss = opt.step(closure)
    x = model.vector().detach().numpy()
    return opt.result, runs["n"], float(loss), x


@pytest.mark.parametrize("method", ALL_METHODS)
def test_rosenbrock_matches_scipy(method: str) -> None:
    ref, ref_calls = _reference(method, rosen, rosen_der, rosen_hess, rosen_hess_prod, X0)
    res, runs, loss, x = _bridge(method, X0)
    assert res.get("nit") == ref.get("nit")
    assert res.success == ref.success
    assert ref.success, f"pick a start where scipy itself converges ({ref.message})"
    # TNC forms Hessian-vector products by differencing gradients, which turns last-bit
    # differences between autograd's and the hand-written gradient into ~1e-5 differences
    # in x; its exact agreement is shown on a problem with bit-identical gradients below.
    tol = 1e-4 if method == "TNC" else 1e-8
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=tol)
    np.testing.assert_array_equal(x, res.x)  # parameters hold the answer
    assert loss == pytest.approx(rosen(res.x), rel=1e-12, abs=1e-300)
    assert runs <= ref_calls, f"closure ran {runs} times, scipy called the numpy objective {ref_calls} times"
    assert res.nfev == runs


def _quad(x: np.ndarray) -> float:
    c = np.array([1.0, 3.0, 0.5, 2.0])
    return float(np.sum(c * (x - 0.25) ** 2))


def _quad_grad(x: np.ndarray) -> np.ndarray:
    c = np.array([1.0, 3.0, 0.5, 2.0])
    return c * (2.0 * (x - 0.25))


@pytest.mark.parametrize("method", ["TNC", "CG", "BFGS", "L-BFGS-B"])
def test_bit_identical_gradients_give_identical_runs(method: str) -> None:
    """With gradients equal to the last bit, even TNC's trajectory is reproduced exactly."""
    x0 = np.array([2.0, -1.0, 1.5, 3.0])
    c = torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64)
    a = torch.nn.Parameter(torch.tensor(x0[:2]))
    b = torch.nn.Parameter(torch.tensor(x0[2:]))
    opt = tzb.MinimizeWrapper([a, b], method=method)

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        x = torch.cat([a, b])
        loss = torch.sum(c * (x - 0.25) ** 2)
        if backward:
            loss.backward()
        return loss

    # the premise: autograd reproduces the hand-written gradient exactly here
    opt.zero_grad()
    closure()
    np.testing.assert_array_equal(torch.cat([a.grad, b.grad]).numpy(), _quad_grad(x0))
    ref = minimize(_quad, x0, jac=_quad_grad, method=method)
    opt.step(closure)
    assert opt.result.get("nit") == ref.get("nit")
    np.testing.assert_array_equal(opt.result.x, ref.x)
    assert opt.result.nfev <= ref.nfev


def test_float32_parameters_reach_the_float64_answer() -> None:
    """scipy always sees float64; a float32 model converges to the same minimum within float32 accuracy."""
    model = Rosenbrock(X0[:2], X0[2:], dtype=torch.float32)
    opt = tzb.MinimizeWrapper(model.parameters(), method="L-BFGS-B")
    opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    np.testing.assert_allclose(model.vector().detach().numpy(), np.ones(4), atol=2e-3)


def test_callable_method_receives_our_derivatives() -> None:
    seen = {}

    def my_method(
        fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None, constraints=(), callback=None, **opts
    ):
        seen.update(jac=jac, hessp=hessp, hess=hess, opts=opts)
        res = minimize(fun, x0, jac=jac, hessp=hessp, method="trust-krylov")
        return res

    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), method=my_method, options={"foo": 1})
    opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    ref = minimize(rosen, X0, jac=rosen_der, hessp=rosen_hess_prod, method="trust-krylov")
    np.testing.assert_allclose(opt.result.x, ref.x, atol=1e-8)
    assert seen["opts"] == {"foo": 1}
    x = np.array([0.3, 0.2, 0.1, 0.5])
    np.testing.assert_allclose(seen["jac"](x), rosen_der(x), rtol=1e-12)
    v = np.array([1.0, -2.0, 0.5, 0.25])
    np.testing.assert_allclose(seen["hessp"](x, v), rosen_hess_prod(x, v), rtol=1e-12)
    np.testing.assert_allclose(seen["hess"](x), rosen_hess(x), rtol=1e-12)


def test_callable_method_gets_exact_products_beside_an_estimator_jac() -> None:
    """With a gradient estimator as jac, a callable method still gets autograd products (hvp_method default)."""
    seen = {}

    def my_method(fun, x0, args=(), jac=None, hess=None, hessp=None, **opts):
        seen.update(jac=jac, hessp=hessp, hess=hess)
        return minimize(fun, x0, jac=jac, method="BFGS")

    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), method=my_method, jac=tzb.FDM(formula="central3"))
    opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    x = np.array([0.3, 0.2, 0.1, 0.5])
    v = np.array([1.0, -2.0, 0.5, 0.25])
    np.testing.assert_allclose(seen["hessp"](x, v), rosen_hess_prod(x, v), rtol=1e-12)
    np.testing.assert_allclose(seen["jac"](x), rosen_der(x), rtol=1e-4)


def test_callable_method_with_a_plain_closure_gets_no_autograd_products() -> None:
    """A plain closure cannot give double-backward products: the method sees no hessp then."""
    seen = {}

    def my_method(fun, x0, args=(), jac=None, hess=None, hessp=None, **opts):
        seen.update(hessp=hessp, hess=hess)
        return minimize(fun, x0, jac=jac, method="BFGS")

    model = Rosenbrock(X0[:2], X0[2:])
    params = list(model.parameters())

    def plain() -> torch.Tensor:
        return model.forward()

    for jac in (tzb.FDM(formula="central3"), False):
        opt = tzb.MinimizeWrapper(params, method=my_method, jac=jac)
        opt.step(plain)
        assert seen["hessp"] is None and seen["hess"] is not None
        np.testing.assert_allclose(opt.result.x, np.ones(4), atol=1e-3)
