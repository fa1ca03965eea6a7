"""newton_cg_armijo: line-search Newton-CG as a scipy custom method and through MinimizeWrapper."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import OptimizeResult, minimize, rosen, rosen_der, rosen_hess, rosen_hess_prod

import torchzero_bridge as tzb
from torchzero_bridge.testing import Rosenbrock
from torchzero_bridge.zeroth_order import FDM

START = np.array([-1.1, 2.5])


class Counted:
    """Wraps a function and counts its calls (the truth ``nfev``/``njev``/``nhev`` are checked against)."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0

    def __call__(self, *a):
        self.calls += 1
        return self.fn(*a)


def double_well(x: np.ndarray) -> float:
    """Minima at (±1, 0), a saddle at the origin; negative curvature along x for |x| < 1/√3."""
    return 0.25 * x[0] ** 4 - 0.5 * x[0] ** 2 + 0.5 * x[1] ** 2


def double_well_grad(x: np.ndarray) -> np.ndarray:
    return np.array([x[0] ** 3 - x[0], x[1]])


def double_well_hessp(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.array([(3 * x[0] ** 2 - 1) * p[0], p[1]])


# ---------------------------------------------------------------------- numpy, exact derivatives
@pytest.mark.parametrize("options", [{}, {"cg_rtol": 1e-10}], ids=["forcing", "exact-cg"])
@pytest.mark.parametrize("x0", [START, np.array([-1.2, 1.0]), np.linspace(-1.5, 1.5, 10)], ids=["2d", "2d-b", "10d"])
def test_rosenbrock_reaches_the_known_minimum(x0: np.ndarray, options: dict) -> None:
    res = minimize(
        rosen, x0, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, tol=1e-10, options=options
    )
    assert res.success and res.status == 0
    np.testing.assert_allclose(res.x, np.ones_like(x0), atol=1e-9)
    assert res.fun < 1e-18
    assert np.max(np.abs(rosen_der(res.x))) <= 1e-10
    np.testing.assert_allclose(res.jac, rosen_der(res.x), rtol=1e-12)


def test_exact_cg_needs_far_fewer_iterations_than_scipys_newton_cg_on_the_benchmark_start() -> None:
    ours = minimize(
        rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, options={"cg_rtol": 1e-10}
    )
    scipys = minimize(rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method="Newton-CG")
    assert ours.nit <= 30 < 200 <= scipys.nit


def test_convex_quadratic_in_exactly_one_newton_step() -> None:
    rng = np.random.default_rng(0)
    M = rng.standard_normal((6, 6))
    A = M @ M.T + 6 * np.eye(6)
    b = rng.standard_normal(6)
    fun, jac = Counted(lambda x: 0.5 * x @ A @ x - b @ x), Counted(lambda x: A @ x - b)
    hessp = Counted(lambda x, p: A @ p)
    res = minimize(fun, np.zeros(6), jac=jac, hessp=hessp, method=tzb.newton_cg_armijo, options={"cg_rtol": 1e-12})
    np.testing.assert_allclose(res.x, np.linalg.solve(A, b), rtol=1e-10, atol=1e-12)
    assert res.nit == 1 and res.success
    assert (res.nfev, res.njev) == (2, 2)  # f and g at x0, then the accepted full step α = 1
    assert res.nhev == hessp.calls <= 6
    assert (fun.calls, jac.calls) == (res.nfev, res.njev)


@pytest.mark.parametrize("options", [{}, {"cg_rtol": 1e-10}, {"cg_maxiter": 1}])
def test_counts_are_the_calls_made(options: dict) -> None:
    fun, jac, hessp = Counted(rosen), Counted(rosen_der), Counted(rosen_hess_prod)
    res = minimize(fun, START, jac=jac, hessp=hessp, method=tzb.newton_cg_armijo, options=options)
    assert (res.nfev, res.njev, res.nhev) == (fun.calls, jac.calls, hessp.calls)
    assert res.njev == res.nit + 1  # one gradient per accepted point
    assert res.nfev >= res.nit + 1


def test_dense_hess_is_used_without_hessp_once_per_iteration() -> None:
    hess = Counted(rosen_hess)
    res = minimize(rosen, START, jac=rosen_der, hess=hess, method=tzb.newton_cg_armijo, options={"cg_rtol": 1e-10})
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-6)
    assert res.nhev == hess.calls == res.nit
    ref = minimize(
        rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, options={"cg_rtol": 1e-10}
    )
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-12)


def test_sparse_and_linear_operator_hessians_work_like_dense_ones() -> None:
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import aslinearoperator

    opts = {"cg_rtol": 1e-10}
    ref = minimize(rosen, START, jac=rosen_der, hess=rosen_hess, method=tzb.newton_cg_armijo, options=opts)
    for wrap in (csr_matrix, aslinearoperator):
        hess = lambda x, w=wrap: w(rosen_hess(x))  # noqa: E731
        res = minimize(rosen, START, jac=rosen_der, hess=hess, method=tzb.newton_cg_armijo, options=opts)
        assert res.nit == ref.nit
        np.testing.assert_allclose(res.x, ref.x, rtol=1e-12)


@pytest.mark.parametrize("x0", [[0.1, 1.0], [0.1, 0.0], [-0.2, 0.5]])
def test_negative_curvature_leads_away_from_the_saddle(x0: list[float]) -> None:
    # at [0.1, 0] the very first CG direction has negative curvature (scaled steepest descent)
    res = minimize(
        double_well, x0, jac=double_well_grad, hessp=double_well_hessp, method=tzb.newton_cg_armijo, tol=1e-10
    )
    assert res.success
    np.testing.assert_allclose(np.abs(res.x), [1.0, 0.0], atol=1e-9)
    assert math.copysign(1.0, res.x[0]) == math.copysign(1.0, x0[0])
    assert res.fun == pytest.approx(-0.25, abs=1e-12)


def test_tol_sets_gtol_and_maxiter_stops() -> None:
    loose = minimize(rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, tol=1.0)
    assert loose.success and np.max(np.abs(loose.jac)) <= 1.0
    tight = minimize(rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, tol=1e-9)
    assert np.max(np.abs(tight.jac)) <= 1e-9 and tight.nit > loose.nit
    short = minimize(
        rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, options={"maxiter": 3}
    )
    assert (short.nit, short.status, short.success) == (3, 1, False)
    assert short.fun < rosen(START)


def test_line_search_failure_stops_with_status_2() -> None:
    # a wrong gradient: at 0 it claims descent along -x, but f only rises
    res = minimize(
        lambda x: float(x @ x),
        np.zeros(1),
        jac=lambda x: 2 * x + 1.0,
        hessp=lambda x, p: 2 * p,
        method=tzb.newton_cg_armijo,
        options={"max_backtracks": 5},
    )
    assert (res.status, res.success, res.nit) == (2, False, 0)
    assert res.nfev == 1 + 6  # f(x0), then α = 1, 1/2, ..., 1/32
    np.testing.assert_array_equal(res.x, [0.0])


def test_non_finite_start_stops_with_status_3() -> None:
    res = minimize(lambda x: math.nan, np.zeros(2), jac=lambda x: x, hessp=lambda x, p: p, method=tzb.newton_cg_armijo)
    assert (res.status, res.success, res.nit) == (3, False, 0)


def test_callback_styles_and_stop_iteration() -> None:
    seen: list = []

    def new_style(intermediate_result: OptimizeResult) -> None:
        seen.append(intermediate_result)
        if len(seen) == 4:
            raise StopIteration

    res = minimize(rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, callback=new_style)
    assert (res.status, res.nit, res.success) == (99, 4, False)
    assert seen[-1].fun == res.fun and np.array_equal(seen[-1].x, res.x)
    xs: list = []
    res = minimize(rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, callback=xs.append)
    assert len(xs) == res.nit and np.array_equal(xs[-1], res.x)
    # as in scipy, only a callback whose sole parameter is intermediate_result gets the new style
    old_style: list = []

    def both(xk: np.ndarray, intermediate_result: object = None) -> None:
        old_style.append((xk, intermediate_result))

    res = minimize(rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, callback=both)
    assert len(old_style) == res.nit and old_style[-1][1] is None and np.array_equal(old_style[-1][0], res.x)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("gtol", -1.0),
        ("gtol", math.nan),
        ("tol", "small"),
        ("maxiter", -1),
        ("maxiter", 2.5),
        ("cg_maxiter", 0),
        ("cg_rtol", -1e-3),
        ("c1", 0.0),
        ("c1", 1.0),
        ("backtrack", 1.0),
        ("backtrack", 0.0),
        ("max_backtracks", 0),
        ("max_backtracks", True),
    ],
)
def test_bad_option_raises_naming_it(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"option {option} "):
        minimize(
            rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, options={option: value}
        )


def test_missing_derivatives_raise() -> None:
    with pytest.raises(ValueError, match="jac"):
        minimize(rosen, START, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo)
    with pytest.raises(ValueError, match="hessp"):
        minimize(rosen, START, jac=rosen_der, method=tzb.newton_cg_armijo)


def test_unknown_options_bounds_and_constraints_warn() -> None:
    with pytest.warns(tzb.IgnoredOptionWarning, match=r"\['xtol'\]"):
        minimize(
            rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, options={"xtol": 1e-3}
        )
    with pytest.warns(tzb.IgnoredOptionWarning, match="bounds"):
        minimize(rosen, START, jac=rosen_der, hessp=rosen_hess_prod, method=tzb.newton_cg_armijo, bounds=[(-2, 2)] * 2)


# ---------------------------------------------------------------------- through MinimizeWrapper
def test_minimize_wrapper_with_autograd() -> None:
    x0 = np.linspace(-1.5, 1.5, 10)
    model = Rosenbrock(x0[:4], x0[4:])  # two tensors
    opt = tzb.MinimizeWrapper(model.parameters(), method=tzb.newton_cg_armijo, options={"cg_rtol": 1e-10})
    calls: dict = {}

    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] = calls.get("n", 0) + 1
        opt.zero_grad()
        loss = model()
        if backward:
            loss.backward()
        return loss

    loss = opt.step(closure)
    res = opt.result
    assert res.success, res.message
    np.testing.assert_allclose(model.vector().detach().numpy(), np.ones(10), atol=1e-4)
    assert float(loss) < 1e-10
    assert res.nfev == calls["n"] and res.nhev > 0 and res.njev > 0
    # same iterates as the numpy run with exact derivatives
    ref = minimize(
        rosen,
        x0,
        jac=rosen_der,
        hessp=rosen_hess_prod,
        method=tzb.newton_cg_armijo,
        options={"cg_rtol": 1e-10},
    )
    assert res.nit == ref.nit
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("hvp_method", ["central", "forward"])
def test_minimize_wrapper_fdm_jac_without_backward(hvp_method: str) -> None:
    x = torch.nn.Parameter(torch.tensor(START, dtype=torch.float64))
    calls = {"n": 0, "backward": 0}

    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] += 1
        loss = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        if backward:
            calls["backward"] += 1
            x.grad = None
            loss.backward()
        return loss

    opt = tzb.MinimizeWrapper(
        [x],
        method=tzb.newton_cg_armijo,
        jac=FDM(formula="central3"),
        hvp_method=hvp_method,
        options={"cg_rtol": 1e-10},
    )
    loss = opt.step(closure)
    assert calls["backward"] == 0
    assert opt.result.nfev == calls["n"] < 600
    # central differences with h = 1e-3 move the stationary point by O(h²): loss about 4e-8
    assert float(loss) < 1e-7
    np.testing.assert_allclose(x.detach().numpy(), [1.0, 1.0], atol=1e-3)


def test_minimize_wrapper_options_are_checked() -> None:
    model = Rosenbrock([-1.1, 2.5])
    opt = tzb.MinimizeWrapper(model.parameters(), method=tzb.newton_cg_armijo, options={"c1": 2.0})
    with pytest.raises(ValueError, match="option c1"):
        opt.step(lambda backward=True: model())
    # the parameters are left at the start
    np.testing.assert_array_equal(model.vector().detach().numpy(), START)
    opt = tzb.MinimizeWrapper(model.parameters(), method=tzb.newton_cg_armijo, options={"foo": 1})
    with pytest.warns(tzb.IgnoredOptionWarning, match="foo"):
        opt.step(lambda backward=True: model())


def test_minimize_wrapper_callback_stops() -> None:
    model = Rosenbrock([-1.1, 2.5])
    seen: list = []
    opt = tzb.MinimizeWrapper(
        model.parameters(), method=tzb.newton_cg_armijo, callback=lambda r: seen.append(r.fun) or len(seen) == 3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(lambda backward=True: model())
    assert len(seen) == 3 and not opt.result.success
    assert opt.result.fun == pytest.approx(min(seen))
