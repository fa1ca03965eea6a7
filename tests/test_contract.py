"""The promises every solver keeps, checked on MinimizeWrapper."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import torchzero_bridge as tzb
from torchzero_bridge.testing import Rosenbrock, make_rosenbrock_closure

X0 = np.array([1.2, 1.1, 1.3, 1.5])


def _recording(model: Rosenbrock, zero_grad):
    """A backward-aware closure that logs (x, backward flag, grad mode) of every run."""
    inner = make_rosenbrock_closure(model, zero_grad)
    log: list[tuple[np.ndarray, bool, bool]] = []

    def closure(backward: bool = True) -> torch.Tensor:
        log.append((model.vector().detach().numpy().copy(), backward, torch.is_grad_enabled()))
        return inner(backward)

    return closure, log


@pytest.mark.parametrize("method", ["BFGS", "L-BFGS-B", "Newton-CG", "trust-ncg", "trust-exact", "SLSQP", "CG"])
def test_one_closure_run_per_distinct_point(method: str) -> None:
    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), method=method)
    closure, log = _recording(model, opt.zero_grad)
    opt.step(closure)
    points = [x.tobytes() for x, _, _ in log]
    assert len(points) == len(set(points)), "the closure ran twice at the same point"
    # gradient runs either call backward, or (Hessian methods) keep the graph for double backward
    assert all(b or grad_mode for _, b, grad_mode in log)


@pytest.mark.parametrize("method", ["Nelder-Mead", "Powell", "COBYLA", "COBYQA"])
def test_value_only_evaluations_run_no_backward(method: str) -> None:
    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), method=method, options={"maxiter": 50})
    closure, log = _recording(model, opt.zero_grad)
    opt.step(closure)
    assert log and not any(b for _, b, _ in log)
    assert not any(grad_mode for _, _, grad_mode in log), "value-only runs happen under no_grad"
    assert opt.result.njev == 0
    assert all(p.grad is None for p in model.parameters())


def test_grad_matches_answer_and_views_stay_valid() -> None:
    model = Rosenbrock(X0[:2], X0[2:])
    view = model.parts[0][1:]  # a view the user holds into a parameter
    storage = [p.data_ptr() for p in model.parameters()]
    opt = tzb.MinimizeWrapper(model.parameters(), method="Nelder-Mead", options={"maxiter": 30})
    opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    assert [p.data_ptr() for p in model.parameters()] == storage
    assert float(view[0].detach()) == float(model.parts[0][1].detach())
    # gradient method: p.grad equals the autograd gradient at the answer
    opt = tzb.MinimizeWrapper(model.parameters(), method="BFGS", options={"maxiter": 7})
    loss = opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    answer = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    ref = Rosenbrock(*answer)
    ref().backward()
    for g, r in zip(grads, ref.parameters()):
        torch.testing.assert_close(g, r.grad, rtol=0, atol=0)
    assert float(loss.detach()) == float(ref().detach())


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("exc", [Boom("failed"), KeyboardInterrupt()])
@pytest.mark.parametrize("method", ["BFGS", "Nelder-Mead"])
def test_error_restores_best_point_and_reraises(exc: BaseException, method: str) -> None:
    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), method=method)
    inner = make_rosenbrock_closure(model, opt.zero_grad)
    seen: list[tuple[float, np.ndarray]] = []

    def closure(backward: bool = True) -> torch.Tensor:
        x = model.vector().detach().numpy().copy()
        if len(seen) == 12:
            raise exc
        loss = inner(backward)
        seen.append((float(loss.detach()), x))
        return loss

    with pytest.raises(type(exc)):
        opt.step(closure)
    best_f, best_x = min(seen, key=lambda t: t[0])
    np.testing.assert_array_equal(model.vector().detach().numpy(), best_x)
    assert opt.result.fun == best_f and opt.result.success is False
    assert type(exc).__name__ in opt.result.message


def test_error_on_first_call_leaves_start() -> None:
    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), method="BFGS")

    def closure(backward: bool = True) -> torch.Tensor:
        with torch.no_grad():
            model.parts[0].add_(1.0)  # even a closure that scribbles on the parameters
        raise Boom("first")

    with pytest.raises(Boom):
        opt.step(closure)
    np.testing.assert_array_equal(model.vector().detach().numpy(), X0)


def test_nonfinite_losses_never_reach_the_model() -> None:
    """The loss is NaN outside a ball; the answer is finite and inside it."""
    w = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="BFGS")

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        r2 = (w**2).sum()
        loss = torch.where(r2 < 4.0, (w - 3.0).pow(2).sum(), torch.tensor(float("nan"), dtype=torch.float64))
        if backward:
            loss.backward()
        return loss

    with pytest.warns(tzb.NonFiniteLossWarning):
        loss = opt.step(closure)
    assert torch.isfinite(w).all() and float((w**2).sum()) < 4.0
    assert math.isfinite(float(loss)) and opt.result.n_nonfinite > 0


def test_nonfinite_raise_policy() -> None:
    w = torch.tensor([1.0], requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="Nelder-Mead", nonfinite="raise")
    calls = {"n": 0}

    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] += 1
        return torch.tensor(float("inf")) if calls["n"] > 3 else (w**2).sum()

    with pytest.raises(FloatingPointError), warnings.catch_warnings():
        warnings.simplefilter("ignore", tzb.NonFiniteLossWarning)
        opt.step(closure)
    assert math.isfinite(float(w))


def test_timeout_and_callback_stop_cleanly() -> None:
    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(
        model.parameters(), method="Nelder-Mead", callback=lambda r: r.nit >= 5 if "nit" in r else False
    )
    n = {"it": 0}

    def cb(res):
        n["it"] += 1
        return n["it"] >= 5

    opt = tzb.MinimizeWrapper(model.parameters(), method="Nelder-Mead", callback=cb)
    opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    assert opt.result.success is False and "callback" in opt.result.message
    assert n["it"] == 5
    assert float(Rosenbrock(*[p.detach() for p in model.parameters()])()) == opt.result.fun

    inner = make_rosenbrock_closure(model, None)

    def slow(backward: bool = True) -> torch.Tensor:
        import time

        time.sleep(0.01)
        return inner(backward)

    opt = tzb.MinimizeWrapper(model.parameters(), method="Powell", timeout=0.2)
    opt.step(slow)
    assert opt.result.success is False and "timeout" in opt.result.message
    assert opt.result.nfev < 40


def test_state_dict_round_trip_and_args_untouched() -> None:
    args = {"method": "L-BFGS-B", "options": {"maxiter": 3}}
    frozen = copy.deepcopy(args)
    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), args)
    opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    assert args == frozen
    sd = opt.state_dict()
    other = tzb.MinimizeWrapper(model.parameters(), method="Newton-CG", hvp_method="central")
    other.load_state_dict(sd)
    assert other.minimizer_args["method"] == "L-BFGS-B" and other.info.name == "L-BFGS-B"
    assert other.minimizer_args["options"] == {"maxiter": 3}
    assert other.hvp_method == "autograd"
    np.testing.assert_array_equal(other.result.x, opt.result.x)
    # a second step continues from the parameters
    before = opt.result.fun
    opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    assert opt.result.fun < before
    assert opt.res is opt.result


def test_flat_bounds_and_group_bounds_are_respected() -> None:
    model = Rosenbrock(X0[:2], X0[2:])
    lo, hi = 1.1, 1.25
    opt = tzb.MinimizeWrapper(model.parameters(), method="L-BFGS-B", bounds=[(lo, hi)] * 4)
    with pytest.warns(UserWarning, match="clipped"):
        opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    x = model.vector().detach().numpy()
    assert np.all(x >= lo) and np.all(x <= hi)
    ref = minimize(lambda v: float(Rosenbrock(v)()), np.clip(X0, lo, hi), method="L-BFGS-B", bounds=[(lo, hi)] * 4)
    np.testing.assert_allclose(x, ref.x, atol=1e-5)

    model = Rosenbrock(X0[:2], X0[2:])
    a, b = model.parts
    groups = [{"params": [a], "bounds": (None, torch.tensor([0.5, 0.6], dtype=torch.float64))}, {"params": [b]}]
    with pytest.warns(UserWarning, match="clipped"):
        opt = tzb.MinimizeWrapper(groups, method="TNC")
        opt.step(make_rosenbrock_closure(model, opt.zero_grad))
    assert float(a[0]) <= 0.5 and float(a[1]) <= 0.6
    assert len(opt.param_groups) == 2


@pytest.mark.parametrize("method", ["SLSQP", "COBYLA", "COBYQA", "trust-constr"])
def test_torch_constraints_hold_at_the_answer(method: str) -> None:
    """min (x-2)^2 + (y-1)^2 s.t. x^2 + y^2 <= 1 and x = y; same answer as scipy on numpy."""
    x = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    cons = [
        {"type": "ineq", "fun": lambda: 1.0 - (x**2 + y**2).sum()},
        {"type": "eq", "fun": lambda: x - y},
    ]
    opt = tzb.MinimizeWrapper([x, y], method=method, constraints=cons)

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = ((x - 2.0) ** 2 + (y - 1.0) ** 2).sum()
        if backward:
            loss.backward()
        return loss

    opt.step(closure)
    ref = minimize(
        lambda v: (v[0] - 2.0) ** 2 + (v[1] - 1.0) ** 2,
        np.zeros(2),
        jac=(lambda v: np.array([2 * (v[0] - 2.0), 2 * (v[1] - 1.0)])) if method in ("SLSQP", "trust-constr") else None,
        method=method,
        constraints=[
            {
                "type": "ineq",
                "fun": lambda v: np.array([1.0 - v[0] ** 2 - v[1] ** 2]),
                "jac": lambda v: np.array([[-2 * v[0], -2 * v[1]]]),
            },
            {"type": "eq", "fun": lambda v: np.array([v[0] - v[1]]), "jac": lambda v: np.array([[1.0, -1.0]])},
        ],
    )
    got = np.array([float(x), float(y)])
    assert abs(got[0] - got[1]) <= 1e-6 and got @ got <= 1.0 + 1e-6  # feasible
    np.testing.assert_allclose(got, ref.x, atol=1e-6)
    np.testing.assert_allclose(got, [2**-0.5, 2**-0.5], atol=1e-3)


def test_torch_constraint_jacobian_is_exact() -> None:
    from torchzero_bridge.scipy.constraints import convert_constraints

    a = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([a, b])
    cons, _ = convert_constraints(
        [{"type": "ineq", "fun": lambda: torch.stack([(a**2).sum() * b[0, 0], a[0] - b[0, 0] ** 3])}], flat
    )
    x = np.array([0.3, -0.2, 0.5])

    def c(v: torch.Tensor) -> torch.Tensor:
        return torch.stack([(v[:2] ** 2).sum() * v[2], v[0] - v[2] ** 3])

    J = torch.autograd.functional.jacobian(c, torch.tensor(x)).numpy()
    np.testing.assert_allclose(cons[0]["jac"](x), J, rtol=1e-14)
    np.testing.assert_allclose(cons[0]["fun"](x), c(torch.tensor(x)).numpy(), rtol=1e-14)


def test_torch_constraint_hessian_is_exact() -> None:
    """trust-constr gets sum_i v_i * Hessian(c_i) by double backward instead of a BFGS guess."""
    from scipy.optimize import NonlinearConstraint

    from torchzero_bridge.scipy.constraints import convert_constraints

    a = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([a, b])
    fun = lambda: torch.stack([(a**2).sum() * b[0, 0], a[0] - b[0, 0] ** 3])  # noqa: E731
    (con,), _ = convert_constraints([NonlinearConstraint(fun, -1.0, 1.0)], flat, objects=True)
    x = np.array([0.7, 0.1, -0.4])
    v = np.array([2.0, -3.0])

    def weighted(u: torch.Tensor) -> torch.Tensor:
        return 2.0 * (u[:2] ** 2).sum() * u[2] - 3.0 * (u[0] - u[2] ** 3)

    H = torch.autograd.functional.hessian(weighted, torch.tensor(x)).numpy()
    op = con.hess(x, v)
    np.testing.assert_allclose(op @ np.eye(3), H, rtol=1e-14, atol=1e-14)


def test_plain_scipy_constraints_pass_through() -> None:
    w = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="SLSQP", constraints={"type": "eq", "fun": lambda v: v[0] + v[1] - 1.0})

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        if backward:
            loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(w.detach().numpy(), [0.5, 0.5], atol=1e-8)


def test_default_method_follows_scipy() -> None:
    w = torch.zeros(2, requires_grad=True)
    assert tzb.MinimizeWrapper([w]).info.name == "BFGS"
    assert tzb.MinimizeWrapper([w], bounds=[(0, 1)] * 2).info.name == "L-BFGS-B"
    assert tzb.MinimizeWrapper([w], constraints={"type": "eq", "fun": lambda: w.sum()}).info.name == "SLSQP"


def test_plain_closure_works_everywhere() -> None:
    """A standard torch closure (no backward argument) drives gradient and Hessian methods."""
    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), method="trust-krylov")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = model()
        loss.backward()
        return loss

    with pytest.warns(UserWarning, match="central"):
        opt.step(closure)
    np.testing.assert_allclose(model.vector().detach().numpy(), np.ones(4), atol=1e-5)


def test_timeout_during_a_polish_stops_cleanly_and_leaves_no_stale_gradient() -> None:
    """DE's best point was evaluated value-only; a timeout inside the gradient polish must not
    escape step() (no closure runs after the stop), and .grad must not belong to a trial point."""
    import time

    w = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.DifferentialEvolutionWrapper(
        [{"params": [w], "bounds": (-3.0, 3.0)}], {"rng": 0, "maxiter": 20, "popsize": 10}, timeout=0.5
    )
    runs_after_stop = []

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = ((w - 1.0) ** 2).sum() + 0.5 * torch.sin(50 * w).abs().sum()
        if backward:
            time.sleep(0.2)  # slow gradient evaluations: the deadline passes inside the polish
            loss.backward()
        if opt.result is not None:
            runs_after_stop.append(1)
        return loss

    opt.step(closure)
    assert opt.result.success is False and "timeout" in opt.result.message
    assert not runs_after_stop
    np.testing.assert_array_equal(w.detach().numpy(), opt.result.x)
    if w.grad is not None:  # only when the polish's last gradient was taken at the answer itself
        v = w.detach().clone().requires_grad_()
        (((v - 1.0) ** 2).sum() + 0.5 * torch.sin(50 * v).abs().sum()).backward()
        torch.testing.assert_close(w.grad, v.grad, rtol=0, atol=0)


def test_derivative_free_method_with_plain_closure_leaves_no_trial_gradient() -> None:
    model = Rosenbrock(X0[:2], X0[2:])
    opt = tzb.MinimizeWrapper(model.parameters(), method="Nelder-Mead", options={"maxiter": 40})

    def closure() -> torch.Tensor:  # a standard closure: it always calls backward
        opt.zero_grad()
        loss = model()
        loss.backward()
        return loss

    opt.step(closure)
    assert all(p.grad is None for p in model.parameters())


def test_nonfinite_policy_applies_at_finite_difference_probe_points() -> None:
    w = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="Newton-CG", hvp_method="central", nonfinite="raise")
    calls = [0]

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        calls[0] += 1
        loss = ((w - 1.0) ** 2).sum()
        if calls[0] == 2:  # the first Hessian-vector probe point
            loss = loss * float("nan")
        if backward:
            loss.backward()
        return loss

    with pytest.raises(FloatingPointError), warnings.catch_warnings():
        warnings.simplefilter("ignore", tzb.NonFiniteLossWarning)
        opt.step(closure)
    assert torch.isfinite(w).all()


def test_step_bumps_version_counters_so_stale_graphs_still_fail_loudly() -> None:
    """Evaluations inside a solve write silently; the answer's write is a normal in-place
    update, so autograd still refuses a graph recorded before the step."""
    w = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    stale = (w * w).sum()  # saves w for backward
    opt = tzb.MinimizeWrapper([w], method="BFGS")

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = ((w - 1.0) ** 2).sum()
        if backward:
            loss.backward()
        return loss

    before = w._version
    opt.step(closure)
    assert w._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()
