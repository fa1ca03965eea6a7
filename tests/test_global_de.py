"""Differential evolution specifics: batched populations, integer tensors, polish gradients,
workers, and resuming from a state_dict."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from scipy import optimize as so

import torchzero_bridge as tzb
from torchzero_bridge.testing.global_functions import GLOBAL_FUNCTIONS, Ackley, CountedFunction, Levy, Rastrigin

BOX3 = [(-5.12, 5.12)] * 3
X0 = [1.3, -2.2, 0.7]


class CountingBatch(tzb.BatchObjective):
    """A BatchObjective that records how many vectorized passes and rows it evaluated."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passes = 0
        self.rows = 0

    def evaluate(self, flat: tzb.FlatParams, X: Any) -> np.ndarray:
        self.passes += 1
        self.rows += len(X)
        return super().evaluate(flat, X)


def plain_closure(model: torch.nn.Module) -> Any:
    def closure() -> torch.Tensor:
        with torch.no_grad():
            return model()

    return closure


# ---------------------------------------------------------------------- batched populations
def test_batched_equals_serial_deferred_and_counts_points() -> None:
    options = {"bounds": BOX3, "rng": 4, "maxiter": 40, "polish": False}
    serial_model = Rastrigin.at(X0)
    serial = tzb.DifferentialEvolutionWrapper(serial_model.parameters(), options, updating="deferred")
    serial.step(plain_closure(serial_model))

    model = Rastrigin.at(X0)
    batch = CountingBatch(model, lambda m: m())
    opt = tzb.DifferentialEvolutionWrapper(model.parameters(), options)
    opt.step(batch)

    f = CountedFunction(GLOBAL_FUNCTIONS["rastrigin"].fun)
    ref = so.differential_evolution(f, BOX3, rng=4, maxiter=40, polish=False, updating="deferred", x0=X0)
    for res in (serial.result, opt.result):
        np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-12)
        assert res.fun == pytest.approx(ref.fun, abs=1e-12)
    # nfev counts points evaluated (not vectorized calls): every row of every batch, and every
    # closure run of the serial path (whose memo skips a point equal to the one just evaluated)
    assert opt.result.nfev == batch.rows == ref.nfev
    assert f.unique <= serial.result.nfev <= f.distinct
    # one pass for the initial population, then one per generation
    assert batch.passes == ref.nit + 1
    assert batch.rows == 15 * 3 * (ref.nit + 1)
    np.testing.assert_array_equal(model.vector().detach().numpy(), opt.result.x)


def test_vectorized_false_turns_batching_off() -> None:
    model = Rastrigin.at(X0)
    batch = CountingBatch(model, lambda m: m())
    opt = tzb.DifferentialEvolutionWrapper(
        model.parameters(), bounds=BOX3, rng=0, maxiter=3, polish=False, vectorized=False
    )
    opt.step(batch)
    assert batch.passes == 0 and opt.result.nfev > 0


def test_batched_with_explicit_immediate_updating_warns() -> None:
    model = Rastrigin.at(X0)
    opt = tzb.DifferentialEvolutionWrapper(
        model.parameters(), bounds=BOX3, maxiter=2, polish=False, updating="immediate"
    )
    with pytest.warns(tzb.IgnoredOptionWarning, match="updating='immediate' is ignored"):
        opt.step(tzb.BatchObjective(model, lambda m: m()))


# ---------------------------------------------------------------------- integers
VALUES = np.array([10.0, 13.0, 7.0, 8.0, 4.0, 9.0])
WEIGHTS = np.array([5.0, 7.0, 4.0, 3.0, 2.0, 6.0])
CAPACITY = 17.0


def knapsack_np(x: np.ndarray) -> float:
    over = max(0.0, float(WEIGHTS @ x) - CAPACITY)
    return -float(VALUES @ x) + 100.0 * over


def knapsack_best(choices: range) -> tuple[float, np.ndarray]:
    best = min(itertools.product(choices, repeat=len(VALUES)), key=lambda c: knapsack_np(np.array(c, dtype=float)))
    return knapsack_np(np.array(best, dtype=float)), np.array(best, dtype=float)


class Knapsack(torch.nn.Module):
    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("take", torch.zeros(len(VALUES), dtype=dtype))
        self.values = torch.as_tensor(VALUES)
        self.weights = torch.as_tensor(WEIGHTS)

    def forward(self) -> torch.Tensor:
        x = self.take.to(torch.float64)
        return -(self.values * x).sum() + 100.0 * torch.clamp((self.weights * x).sum() - CAPACITY, min=0.0)


@pytest.mark.parametrize(
    ("dtype", "bounds", "choices"), [(torch.int64, (0, 3), range(4)), (torch.bool, None, range(2))]
)
def test_integer_knapsack_is_solved_with_integral_answer_in_own_dtype(
    dtype: torch.dtype, bounds: tuple[int, int] | None, choices: range
) -> None:
    model = Knapsack(dtype)
    seen: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        seen.append(model.take.clone())
        return model()

    group: dict[str, Any] = {"params": [model.take]}
    if bounds is not None:
        group["bounds"] = bounds
    opt = tzb.DifferentialEvolutionWrapper([group], rng=0, maxiter=200)
    loss = opt.step(closure)

    best_f, best_x = knapsack_best(choices)
    assert model.take.dtype == dtype
    assert float(loss) == best_f
    np.testing.assert_array_equal(model.take.to(torch.float64).numpy(), best_x)
    assert all(t.dtype == dtype for t in seen)
    # scipy run directly with the same integrality reaches the same answer with the same count
    lo, hi = (0, 1) if bounds is None else bounds
    f = CountedFunction(knapsack_np)
    ref = so.differential_evolution(
        f, [(lo, hi)] * len(VALUES), rng=0, maxiter=200, integrality=np.ones(len(VALUES), bool), x0=np.zeros(6)
    )
    np.testing.assert_array_equal(opt.result.x, ref.x)
    assert f.unique <= opt.result.nfev <= f.distinct


def test_mixed_integer_and_float_tensors_batched() -> None:
    class Mixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor([0.0, 0.0], dtype=torch.float64))
            self.register_buffer("n", torch.tensor([0, 0], dtype=torch.int32))

        def forward(self) -> torch.Tensor:
            return ((self.k - 0.25) ** 2).sum() + ((self.n.to(torch.float64) - torch.tensor([2.0, -3.0])) ** 2).sum()

    model = Mixed()
    groups = [{"params": [model.k], "bounds": (-1.0, 1.0)}, {"params": [model.n], "bounds": (-5, 5)}]
    opt = tzb.DifferentialEvolutionWrapper(groups, rng=1, maxiter=100)
    opt.step(tzb.BatchObjective(model, lambda m: m()))
    assert model.n.tolist() == [2, -3] and model.n.dtype == torch.int32
    np.testing.assert_allclose(model.k.detach().numpy(), [0.25, 0.25], atol=1e-6)
    assert opt.result.njev > 0, "the float entries were polished with exact gradients"


# ---------------------------------------------------------------------- polish gradients
def test_polish_gradient_modes() -> None:
    spec = GLOBAL_FUNCTIONS["levy"]
    # a closure without `backward` and without a gradient: "auto" uses scipy's finite differences
    model = Levy.at(X0)
    opt = tzb.DifferentialEvolutionWrapper(model.parameters(), bounds=BOX3, rng=3, maxiter=30)
    opt.step(plain_closure(model))
    polished: list[so.OptimizeResult] = []

    def polish(func, x0, **kw):  # scipy's default polish, recording its result
        polished.append(so.minimize(func, x0, method="L-BFGS-B", **kw))
        return polished[-1]

    ref = so.differential_evolution(spec.fun, BOX3, rng=3, maxiter=30, x0=X0, polish=polish)
    # njev counts the finite-difference gradients the polish computed, as scipy's own polish reports
    assert opt.result.njev == polished[0].njev > 0
    np.testing.assert_allclose(opt.result.x, ref.x, atol=1e-6)  # finite differences of ulp-different values
    # jac=True with a closure that never calls backward: a clear error, parameters restored
    model = Levy.at(X0)
    opt = tzb.DifferentialEvolutionWrapper(model.parameters(), bounds=BOX3, rng=3, maxiter=5, jac=True)
    with pytest.raises(tzb.MissingGradientError, match="pass jac=False"):
        opt.step(plain_closure(model))
    assert opt.result is not None
    np.testing.assert_array_equal(model.vector().detach().numpy(), opt.result.x)
    with pytest.warns(tzb.IgnoredOptionWarning, match="only affects the built-in polish"):
        tzb.DifferentialEvolutionWrapper(model.parameters(), bounds=BOX3, polish=False, jac=True)


# ---------------------------------------------------------------------- workers
def test_map_like_workers_pass_through() -> None:
    spec = GLOBAL_FUNCTIONS["ackley"]
    model = Ackley.at(X0)
    calls = []

    def my_map(func: Any, iterable: Any) -> list[float]:
        calls.append(1)
        return [func(x) for x in iterable]

    opt = tzb.DifferentialEvolutionWrapper(
        model.parameters(), bounds=BOX3, rng=7, maxiter=20, polish=False, workers=my_map
    )
    opt.step(plain_closure(model))
    f = CountedFunction(spec.fun)
    ref = so.differential_evolution(f, BOX3, rng=7, maxiter=20, polish=False, workers=map, updating="deferred", x0=X0)
    np.testing.assert_allclose(opt.result.x, ref.x, atol=1e-12)
    assert f.unique <= opt.result.nfev <= f.distinct and len(calls) == ref.nit + 1


# ---------------------------------------------------------------------- seeds and state
def _fresh(warm_start: bool = False, **kw: Any) -> tuple[torch.nn.Module, tzb.DifferentialEvolutionWrapper]:
    model = Rastrigin.at(X0)
    options = {"bounds": BOX3, "maxiter": 8, "polish": False, **kw}
    return model, tzb.DifferentialEvolutionWrapper(model.parameters(), options, warm_start=warm_start)


@pytest.mark.parametrize("key", ["rng", "seed"])
def test_state_dict_resumes_the_random_stream_exactly(key: str) -> None:
    model1, opt1 = _fresh(**{key: 11})
    opt1.step(plain_closure(model1))
    saved = opt1.state_dict()
    after_first = model1.vector().detach().clone()
    opt1.step(plain_closure(model1))

    model2, opt2 = _fresh(**{key: 999})
    opt2.load_state_dict(saved)
    tzb.FlatParams(model2.parameters()).write(after_first.numpy())
    opt2.step(plain_closure(model2))
    np.testing.assert_array_equal(opt2.result.x, opt1.result.x)
    assert opt2.result.nfev == opt1.result.nfev

    # the same two runs done with scipy directly, sharing one generator
    gen: Any = np.random.default_rng(11) if key == "rng" else np.random.RandomState(11)
    fun = GLOBAL_FUNCTIONS["rastrigin"].fun
    first = so.differential_evolution(fun, BOX3, maxiter=8, polish=False, x0=X0, **{key: gen})
    second = so.differential_evolution(fun, BOX3, maxiter=8, polish=False, x0=first.x, **{key: gen})
    np.testing.assert_allclose(opt1.result.x, second.x, atol=1e-12)


def test_warm_start_continues_from_the_last_population() -> None:
    model, opt = _fresh(warm_start=True, rng=5)
    opt.step(plain_closure(model))
    saved = opt.state_dict()
    assert saved["torchzero_bridge"]["state"]["population"].shape == (45, 3)
    opt.step(plain_closure(model))

    gen = np.random.default_rng(5)
    fun = GLOBAL_FUNCTIONS["rastrigin"].fun
    first = so.differential_evolution(fun, BOX3, maxiter=8, polish=False, x0=X0, rng=gen)
    second = so.differential_evolution(fun, BOX3, maxiter=8, polish=False, x0=first.x, rng=gen, init=first.population)
    np.testing.assert_allclose(opt.result.x, second.x, atol=1e-12)
    assert opt.result.fun <= first.fun

    model3, opt3 = _fresh(warm_start=False, rng=0)
    opt3.load_state_dict(saved)
    tzb.FlatParams(model3.parameters()).write(first.x)
    opt3.step(plain_closure(model3))
    assert opt3.warm_start
    np.testing.assert_allclose(opt3.result.x, second.x, atol=1e-12)


# ---------------------------------------------------------------------- value-only closures, closure errors
def value_only_closure(model: torch.nn.Module, log: list[bool]) -> Any:
    """The README's derivative-free recipe: accepts ``backward`` but never calls it."""

    def closure(backward: bool = True) -> torch.Tensor:
        log.append(backward)
        return model()

    return closure


def test_value_only_closure_polishes_with_finite_differences_and_warns() -> None:
    spec = GLOBAL_FUNCTIONS["levy"]
    model = Levy.at(X0)
    log: list[bool] = []
    opt = tzb.DifferentialEvolutionWrapper(model.parameters(), bounds=BOX3, rng=3, maxiter=30)
    with pytest.warns(tzb.BridgeWarning, match="left no gradient") as caught:
        opt.step(value_only_closure(model, log))
    assert len(caught) == 1
    # detected at the first evaluation: the only run asked for a backward pass
    assert log[0] is True and not any(log[1:]) and len(log) == opt.result.nfev
    ref = so.differential_evolution(spec.fun, BOX3, rng=3, maxiter=30, x0=X0)  # scipy's finite-difference polish
    np.testing.assert_allclose(opt.result.x, ref.x, atol=1e-6)
    assert opt.result.fun == pytest.approx(ref.fun, rel=1e-9, abs=1e-12)


def test_value_only_closure_with_jac_true_fails_at_the_first_evaluation() -> None:
    model = Levy.at(X0)
    log: list[bool] = []
    opt = tzb.DifferentialEvolutionWrapper(model.parameters(), bounds=BOX3, rng=3, maxiter=30, jac=True)
    with pytest.raises(tzb.MissingGradientError, match="pass jac=False"):
        opt.step(value_only_closure(model, log))
    assert log == [True]
    # the parameters hold the one point evaluated (scipy's rescaled x0, within an ulp of X0)
    np.testing.assert_array_equal(model.vector().detach().numpy(), opt.result.x)
    np.testing.assert_allclose(opt.result.x, X0, rtol=1e-15)


class UserError(ValueError):
    """An error type of the user's own."""


@pytest.mark.parametrize("updating", ["immediate", "deferred"])
@pytest.mark.parametrize("at_call", [1, 20])
def test_closure_errors_keep_their_type(updating: str, at_call: int) -> None:
    model = Levy.at(X0)
    calls = {"n": 0}

    def bad_shape(backward: bool = True) -> torch.Tensor:
        calls["n"] += 1
        loss = model()
        return loss.expand(2) if calls["n"] == at_call else loss

    opt = tzb.DifferentialEvolutionWrapper(model.parameters(), bounds=BOX3, rng=0, updating=updating, jac=False)
    with pytest.raises(tzb.ClosureError, match="scalar loss"):
        opt.step(bad_shape)

    def raises(backward: bool = True) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] >= at_call:
            raise UserError("my model broke")
        return model()

    calls["n"] = 0
    opt = tzb.DifferentialEvolutionWrapper(model.parameters(), bounds=BOX3, rng=0, updating=updating, jac=False)
    with pytest.raises(UserError, match="my model broke") as info:
        opt.step(raises)
    assert info.value.__context__ is None and info.value.__cause__ is None
