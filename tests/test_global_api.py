"""Global wrappers: gngdb-style calls, bad inputs, callbacks, timeouts, interruptions, state."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import optimize as so

import torchzero_bridge as tzb
from torchzero_bridge.testing.global_functions import GLOBAL_FUNCTIONS, Ackley, CountedFunction, SixHumpCamel

BOX2 = [(-5.0, 5.0), (-5.0, 5.0)]


class GngdbAckley(torch.nn.Module):
    """The model from gngdb's own global-wrapper tests."""

    def __init__(self) -> None:
        super().__init__()
        self.x = torch.nn.Parameter(torch.ones(2))

    def forward(self) -> torch.Tensor:
        x = self.x
        arg1 = -0.2 * torch.sqrt(0.5 * (x[0] ** 2 + x[1] ** 2) + 1e-3)
        arg2 = 0.5 * (torch.cos(2.0 * math.pi * x[0]) + torch.cos(2.0 * math.pi * x[1]))
        return -20.0 * torch.exp(arg1) - torch.exp(arg2) + 20.0 + math.e


def gngdb_ackley_np(x: np.ndarray) -> float:
    arg1 = -0.2 * np.sqrt(0.5 * (x[0] ** 2 + x[1] ** 2) + 1e-3)
    arg2 = 0.5 * (np.cos(2.0 * np.pi * x[0]) + np.cos(2.0 * np.pi * x[1]))
    return float(-20.0 * np.exp(arg1) - np.exp(arg2) + 20.0 + np.e)


GNGDB_MIN = gngdb_ackley_np(np.zeros(2))


# ---------------------------------------------------------------------- gngdb-style calls, verbatim
def test_gngdb_dual_annealing_call() -> None:
    model = GngdbAckley().double()
    minimizer_args = dict(method="SLSQP", options={"disp": False, "maxiter": 10000})
    optimizer = tzb.DualAnnealingWrapper(model.parameters(), minimizer_args, dict(bounds=BOX2))

    def closure():  # gngdb's closure, as written in its tests
        optimizer.zero_grad()
        loss = model()
        loss.backward()
        return loss

    optimizer.step(closure)
    assert optimizer.res.fun == pytest.approx(GNGDB_MIN, abs=1e-6)
    np.testing.assert_allclose(optimizer.res.x, [0.0, 0.0], atol=1e-3)
    np.testing.assert_array_equal(model.x.detach().numpy(), optimizer.res.x)


def test_gngdb_dual_annealing_local_search_options_is_mapped() -> None:
    model = GngdbAckley().double()
    with pytest.warns(DeprecationWarning, match="now calls minimizer_kwargs"):
        optimizer = tzb.DualAnnealingWrapper(
            model.parameters(), None, dict(bounds=BOX2, seed=3, maxiter=40, local_search_options={"method": "SLSQP"})
        )
    optimizer.step(lambda: _backward(model))
    f = CountedFunction(gngdb_ackley_np)
    ref = so.dual_annealing(f, BOX2, seed=3, maxiter=40, x0=np.ones(2), minimizer_kwargs={"method": "SLSQP"})
    # scipy's side uses finite-difference gradients here, the wrapper exact ones: same minimum
    assert optimizer.res.fun == pytest.approx(ref.fun, abs=1e-7)
    assert optimizer.local_args is not None and optimizer.local_args["method"] == "SLSQP"


def _backward(model: torch.nn.Module) -> torch.Tensor:
    for p in model.parameters():
        p.grad = None
    loss = model()
    loss.backward()
    return loss


def test_gngdb_differential_evolution_and_shgo_calls() -> None:
    model = GngdbAckley().double()
    optimizer = tzb.DifferentialEvolutionWrapper(model.parameters(), dict(bounds=BOX2, disp=False))

    def closure():  # gngdb's closure, as written in its tests
        with torch.no_grad():
            return model()

    optimizer.step(closure)
    assert optimizer.res.fun == pytest.approx(GNGDB_MIN, abs=1e-6)

    model = GngdbAckley().double()
    shgo_kwargs = dict(bounds=BOX2, options={"disp": False})
    minimizer_args = dict(method="SLSQP", options={"disp": False, "maxiter": 10000})
    optimizer = tzb.SHGOWrapper(model.parameters(), minimizer_args, shgo_kwargs)
    optimizer.step(lambda: _backward(model))
    assert optimizer.res.fun == pytest.approx(GNGDB_MIN, abs=1e-6)


def test_gngdb_basinhopping_call_with_closure_object() -> None:
    torch.manual_seed(0)
    X = torch.randn(60, 5, dtype=torch.float64)
    y = (X @ torch.randn(5, 3, dtype=torch.float64)).argmax(1)
    model = torch.nn.Linear(5, 3).double()

    class Closure:
        def __init__(self, model: torch.nn.Module) -> None:
            self.model = model

        @staticmethod
        def loss(model: torch.nn.Module) -> torch.Tensor:
            return F.cross_entropy(model(X), y)

        def __call__(self) -> torch.Tensor:
            optimizer.zero_grad()
            loss = self.loss(self.model)
            loss.backward()
            return loss

    minimizer_args = dict(method="trust-ncg", options={"disp": False, "maxiter": 100})
    basinhopping_kwargs = {"niter": 2}
    optimizer = tzb.BasinHoppingWrapper(model.parameters(), minimizer_args, basinhopping_kwargs)
    start = float(Closure.loss(model).detach())
    optimizer.step(Closure(model))
    assert optimizer.res.fun < 0.5 * start
    assert optimizer.res.nhev > 0, "exact Hessian-vector products from the closure object"


# ---------------------------------------------------------------------- bad inputs
def _w(dtype: torch.dtype = torch.float64, n: int = 2) -> torch.Tensor:
    return torch.zeros(n, dtype=dtype, requires_grad=dtype.is_floating_point)


BAD_INPUTS = [
    # (constructor, expected error, message fragment)
    (lambda: tzb.DifferentialEvolutionWrapper([_w()]), ValueError, "DifferentialEvolutionWrapper needs finite bounds"),
    (
        lambda: tzb.DualAnnealingWrapper([_w()]),
        ValueError,
        "param_groups[0]['params'][0] (shape (2,), torch.float64)[0]",
    ),
    (lambda: tzb.DirectWrapper([_w()]), ValueError, "DirectWrapper needs finite bounds for every entry"),
    (lambda: tzb.SHGOWrapper([_w()]), ValueError, "SHGOWrapper needs bounds"),
    (
        lambda: tzb.DifferentialEvolutionWrapper([{"params": [_w()], "bounds": (-1.0, None)}]),
        ValueError,
        "has none (lo=-1.0, hi=inf)",
    ),
    (
        lambda: tzb.DifferentialEvolutionWrapper([{"params": [_w()], "bounds": (1.0, -1.0)}]),
        ValueError,
        "lower bound 1.0 is above upper bound -1.0",
    ),
    (lambda: tzb.DirectWrapper([_w()], bounds=[(1.0, 0.0), (0.0, 1.0)]), ValueError, "above upper bound"),
    (
        lambda: tzb.DifferentialEvolutionWrapper([_w()], {"bounds": [(-1, 1)] * 3}),
        ValueError,
        "expected 2 (lo, hi) pairs",
    ),
    (
        lambda: tzb.SHGOWrapper([{"params": [_w()], "bounds": (torch.zeros(3), torch.ones(3))}]),
        ValueError,
        "does not broadcast to the parameter's shape (2,)",
    ),
    (
        lambda: tzb.DualAnnealingWrapper([{"params": [_w(torch.int64)], "bounds": (0, 5)}]),
        TypeError,
        "has integer dtype torch.int64; this solver optimizes floating-point tensors only",
    ),
    (lambda: tzb.BasinHoppingWrapper([_w(torch.bool)]), TypeError, "has integer dtype torch.bool"),
    (lambda: tzb.SHGOWrapper([_w(torch.int32)], bounds=BOX2), TypeError, "has integer dtype torch.int32"),
    (lambda: tzb.DirectWrapper([_w(torch.uint8)], bounds=BOX2), TypeError, "has integer dtype torch.uint8"),
    (
        lambda: tzb.DifferentialEvolutionWrapper([{"params": [_w(torch.int64)]}]),
        ValueError,
        "needs finite bounds for every entry",
    ),
    (
        lambda: tzb.DifferentialEvolutionWrapper([_w()], bounds=BOX2, maxfun=10),
        TypeError,
        "unknown option(s) ['maxfun']",
    ),
    (lambda: tzb.BasinHoppingWrapper([_w()], None, {"bounds": BOX2}), TypeError, "unknown option(s) ['bounds']"),
    (lambda: tzb.DirectWrapper([_w()], {"bounds": BOX2}, bounds=BOX2), ValueError, "bounds given both"),
    (lambda: tzb.DualAnnealingWrapper([_w()], bounds=BOX2, rng=1, seed=1), ValueError, "either rng or seed"),
    (lambda: tzb.DirectWrapper([_w()], {"maxfun": 5}, callback=print, bounds=BOX2, timeout=-1), ValueError, "timeout"),
    (lambda: tzb.DirectWrapper([_w()], [("bounds", BOX2)]), TypeError, "direct_kwargs: expected a dict"),
    (lambda: tzb.BasinHoppingWrapper([_w()], {"method": "nope"}), ValueError, "unknown method 'nope'"),
    (lambda: tzb.DirectWrapper([_w()], {"method": "BFGS"}, bounds=BOX2), TypeError, "unknown option(s) ['method']"),
    (lambda: tzb.DifferentialEvolutionWrapper([_w()], bounds=BOX2, jac="yes"), ValueError, "jac: expected True"),
    (lambda: tzb.DifferentialEvolutionWrapper([_w()], bounds=BOX2, vectorized=1), TypeError, "vectorized: expected"),
    (
        lambda: tzb.DualAnnealingWrapper([_w()], {"method": "BFGS"}, {"minimizer_kwargs": {}, "bounds": BOX2}),
        ValueError,
        "minimizer_kwargs given both",
    ),
]


@pytest.mark.parametrize(("make", "error", "fragment"), BAD_INPUTS)
def test_bad_inputs_give_clear_errors(make: Any, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        make()
    assert fragment in str(info.value)


def test_vectorized_true_with_a_plain_closure_is_a_clear_error() -> None:
    w = _w()
    opt = tzb.DifferentialEvolutionWrapper([w], bounds=BOX2, vectorized=True)
    with pytest.raises(ValueError, match=r"vectorized=True needs a closure that evaluates a whole population"):
        opt.step(lambda: (w**2).sum())
    assert w.tolist() == [0.0, 0.0], "parameters left at the start"


def test_ignored_options_warn() -> None:
    with pytest.warns(tzb.IgnoredOptionWarning, match="'args'.*ignored"):
        tzb.DirectWrapper([_w()], bounds=BOX2, args=(1,))
    with pytest.warns(tzb.IgnoredOptionWarning, match="minimizer_args are ignored"):
        tzb.DualAnnealingWrapper([_w()], {"method": "BFGS"}, bounds=BOX2, no_local_search=True)
    with pytest.warns(tzb.IgnoredOptionWarning, match="BFGS cannot handle bounds"):
        tzb.BasinHoppingWrapper([{"params": [_w()], "bounds": (-1, 1)}], {"method": "BFGS"})
    with pytest.warns(tzb.IgnoredOptionWarning, match="does not use option"):
        tzb.SHGOWrapper([_w()], {"method": "SLSQP", "options": {"bogus": 1}}, bounds=BOX2)


def test_start_outside_bounds_is_clipped_with_a_warning() -> None:
    spec = GLOBAL_FUNCTIONS["six_hump_camel"]
    model = SixHumpCamel.at([4.0, 0.5])  # x is outside [-3, 3]
    opt = tzb.DualAnnealingWrapper(model.parameters(), bounds=spec.bounds(2), rng=0, maxiter=5)
    with pytest.warns(
        UserWarning, match=r"outside the bounds at 1 entries \(first: param_groups\[0\]\['params'\]\[0\]"
    ):
        opt.step(lambda: _backward(model))
    f = CountedFunction(spec.fun)
    local = {"method": "L-BFGS-B", "jac": spec.grad, "bounds": spec.bounds(2), "options": {"maxiter": 100}}
    ref = so.dual_annealing(f, spec.bounds(2), rng=0, maxiter=5, x0=[3.0, 0.5], minimizer_kwargs=local)
    np.testing.assert_allclose(opt.result.x, ref.x, atol=1e-9)


# ---------------------------------------------------------------------- callbacks, timeouts, errors
@pytest.mark.parametrize(
    ("make", "extra"),
    [
        (
            lambda m, cb: tzb.DifferentialEvolutionWrapper(m.parameters(), bounds=BOX2, rng=0, callback=cb),
            "convergence",
        ),
        (lambda m, cb: tzb.DualAnnealingWrapper(m.parameters(), bounds=BOX2, rng=0, callback=cb), "context"),
        (lambda m, cb: tzb.BasinHoppingWrapper(m.parameters(), rng=0, callback=cb), "accept"),
        (lambda m, cb: tzb.SHGOWrapper(m.parameters(), bounds=BOX2, sampling_method="sobol", callback=cb), None),
        (lambda m, cb: tzb.DirectWrapper(m.parameters(), bounds=BOX2, callback=cb), None),
    ],
)
def test_callback_gets_results_and_can_stop(make: Any, extra: str | None) -> None:
    model = Ackley.at([1.7, -2.4])
    seen: list[Any] = []

    def callback(res: so.OptimizeResult) -> bool:
        seen.append(res)
        return len(seen) >= 3

    opt = make(model, callback)
    opt.step(lambda: _backward(model))
    assert len(seen) == 3
    assert all(r.x.shape == (2,) and np.isfinite(r.fun) for r in seen)
    if extra is not None:
        assert extra in seen[0]
    res = opt.result
    assert res.success is False and res.message == "stopped by callback"
    # parameters hold the best finite point evaluated
    assert res.fun == pytest.approx(GLOBAL_FUNCTIONS["ackley"].fun(res.x), abs=1e-12)
    np.testing.assert_array_equal(model.vector().detach().numpy(), res.x)


def test_timeout_stops_cleanly_at_the_best_point() -> None:
    model = Ackley.at([1.7, -2.4, 0.3])
    values: list[float] = []

    def closure() -> torch.Tensor:
        time.sleep(0.002)
        with torch.no_grad():
            loss = model()
        values.append(float(loss))
        return loss

    opt = tzb.DualAnnealingWrapper(model.parameters(), bounds=[(-30, 30)] * 3, no_local_search=True, timeout=0.3)
    opt.step(closure)
    assert 10 < len(values) < 1000
    assert opt.result.success is False and "timeout" in opt.result.message
    assert opt.result.fun == min(values) == float(model().detach())


def test_closure_error_leaves_parameters_at_best_point_and_propagates() -> None:
    model = Ackley.at([1.7, -2.4, 0.3])
    values: list[tuple[float, np.ndarray]] = []

    def closure() -> torch.Tensor:
        if len(values) == 60:
            raise RuntimeError("boom")
        with torch.no_grad():
            loss = model()
        values.append((float(loss), model.vector().detach().numpy().copy()))
        return loss

    opt = tzb.DifferentialEvolutionWrapper(model.parameters(), bounds=[(-30, 30)] * 3, rng=0)
    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    best_f, best_x = min(values, key=lambda t: t[0])
    np.testing.assert_array_equal(model.vector().detach().numpy(), best_x)
    assert opt.result.fun == best_f


def test_state_dict_round_trips_options_for_every_wrapper() -> None:
    w = _w()
    makers = [
        lambda p: tzb.DifferentialEvolutionWrapper(p, {"bounds": BOX2, "popsize": 7, "rng": 3}),
        lambda p: tzb.DualAnnealingWrapper(p, {"method": "SLSQP"}, bounds=BOX2, maxiter=9, seed=4),
        lambda p: tzb.BasinHoppingWrapper(p, {"method": "CG"}, niter=4, T=0.5, rng=1),
        lambda p: tzb.SHGOWrapper(p, None, bounds=BOX2, n=32, sampling_method="sobol"),
        lambda p: tzb.DirectWrapper(p, bounds=BOX2, eps=1e-3),
    ]
    for make in makers:
        opt = make([w])
        saved = opt.state_dict()
        fresh = type(opt)([w], **({"bounds": BOX2} if type(opt) not in (tzb.BasinHoppingWrapper,) else {}))
        fresh.load_state_dict(saved)
        assert fresh.solver_kwargs == opt.solver_kwargs
        assert fresh.flat_bounds == opt.flat_bounds
        assert fresh.local_args == opt.local_args or fresh.local_args is None
        assert fresh._rng_kind == opt._rng_kind
        if opt._rng is not None:  # the restored generator continues the same stream
            np.testing.assert_array_equal(fresh._rng.uniform(size=4), copy.deepcopy(opt._rng).uniform(size=4))


def test_param_groups_may_hold_generators() -> None:
    model = Ackley.at([1.7, -2.4])
    opt = tzb.DirectWrapper([{"params": model.parameters(), "bounds": (-5.0, 5.0)}], maxfun=200)
    assert len(opt.param_groups[0]["params"]) == 2
    opt.step(lambda: model())
    assert opt.result.nfev >= 200
