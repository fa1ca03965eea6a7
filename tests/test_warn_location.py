"""Warnings point at the user's line, wherever inside the package (or a solver calling back into it) they start.

Each case runs one statement on a line recorded with ``_line()`` and checks that the warning's
``filename``/``lineno`` are this file and that line: at construction, inside a step, inside
scipy's own loop (a non-finite loss met by BFGS, options of a custom scipy method), inside a
nested optimizer (a GradChain stage).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import scipy.optimize
import torch

import torchzero_bridge as tzb
from torchzero_bridge.errors import ConvergedWarning, IgnoredOptionWarning, NonFiniteLossWarning


def _line() -> int:
    """The caller's line number plus one: the statement written right after the call."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno + 1


def _caught(run: Callable[[], Any], category: type[Warning]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    hits = [w for w in caught if issubclass(w.category, category)]
    assert hits, f"no {category.__name__}; got {[str(w.message) for w in caught]}"
    return hits


def _assert_here(hits: list[warnings.WarningMessage], line: int) -> None:
    for w in hits:
        assert (w.filename, w.lineno) == (__file__, line), f"{w.message!s:.60} points at {w.filename}:{w.lineno}"


def test_a_warning_at_construction_points_at_the_constructor_call() -> None:
    optuna = pytest.importorskip("optuna")
    groups, sampler = [{"params": [torch.zeros(2)], "bounds": (-1, 1)}], optuna.samplers.RandomSampler(seed=0)

    def run() -> None:
        nonlocal line
        line = _line()
        tzb.OptunaWrapper(groups, sampler, n_trials=2, seed=3)

    line = 0
    _assert_here(_caught(run, IgnoredOptionWarning), line)


def test_a_warning_from_inside_scipys_loop_points_at_the_step_call() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="Nelder-Mead", options={"maxiter": 30})

    def closure(backward: bool = True) -> torch.Tensor:
        loss = (w**2).sum()
        return loss if float(w[0]) < 1.04 else loss * float("nan")  # NaN on part of the simplex

    def run() -> None:
        nonlocal line
        line = _line()
        opt.step(closure)

    line = 0
    _assert_here(_caught(run, NonFiniteLossWarning), line)


def test_a_custom_scipy_method_warns_at_the_users_minimize_call() -> None:
    rosen, rosen_der, rosen_hess_prod = scipy.optimize.rosen, scipy.optimize.rosen_der, scipy.optimize.rosen_hess_prod
    newton, bad = tzb.newton_cg_armijo, {"maxiter": 2, "foo": 1}

    def run() -> None:
        nonlocal line
        line = _line()
        scipy.optimize.minimize(rosen, [1.0, 2.0], jac=rosen_der, hessp=rosen_hess_prod, method=newton, options=bad)

    line = 0
    _assert_here(_caught(run, IgnoredOptionWarning), line)


def test_a_start_outside_the_bounds_warns_at_the_step_call() -> None:
    w = torch.tensor([3.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([{"params": [w], "bounds": (-1.0, 1.0)}], method="L-BFGS-B")

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        if backward:
            loss.backward()
        return loss

    def run() -> None:
        nonlocal line
        line = _line()
        opt.step(closure)

    line = 0
    hits = _caught(run, UserWarning)
    _assert_here([h for h in hits if "outside the bounds" in str(h.message)], line)


def test_a_derivative_free_method_warns_at_the_step_call() -> None:
    w = torch.zeros(2)
    opt = tzb.GridSearch([w], bounds=(-1.0, 1.0), step=1.0, refine=None, batch_size=4)

    def run() -> None:
        nonlocal line
        for _ in range(200):
            line = _line()
            opt.step(lambda: float((w**2).sum()))
            if opt.converged:
                break

    line = 0
    _assert_here(_caught(run, ConvergedWarning), line)


def test_a_nested_stage_warns_at_the_chains_step_call() -> None:
    w = torch.tensor([1.0, 1.0], requires_grad=True)
    chain = tzb.GradChain([w], [lambda q: tzb.SPSA(q, seed=0), lambda q: torch.optim.SGD(q, lr=0.1)])

    def run() -> None:
        nonlocal line
        line = _line()
        chain.step(lambda backward=True: (w**2).sum() * float("nan"))

    line = 0
    hits = _caught(run, NonFiniteLossWarning)
    _assert_here(hits, line)
