"""Whole-run steps (scipy global solvers, nevergrad, optuna) never end worse than they started.

The start point competes and the parameters end at the best point of the optimizer's whole
life. Truths: the minimum over every closure run logged by the test, and scipy's DIRECT run
directly.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import scipy.optimize as so
import torch

import torchzero_bridge as tzb
from torchzero_bridge.testing.global_functions import Rastrigin, rastrigin
from torchzero_bridge.testing.registry import ENTRIES, Entry
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer

WHOLE_RUN = [e for e in ENTRIES if e.whole_run and e.best_point]
WHOLE_RUN = [e for e in WHOLE_RUN if issubclass(getattr(tzb, e.name.split("[")[0]), tzb.BridgeOptimizer)]


def _recording_closure(model: torch.nn.Module, opt: Any, seen: list[tuple[float, torch.Tensor]]) -> Any:
    """A backward-aware closure that appends ``(loss, flat parameters)`` to ``seen`` at every run."""

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = model()
        if backward and torch.is_grad_enabled():
            loss.backward()
        seen.append((float(loss.detach()), torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])))
        return loss

    return closure


def test_every_whole_run_solver_is_checked() -> None:
    names = {e.name.split("[")[0] for e in WHOLE_RUN}
    assert {"DifferentialEvolutionWrapper", "DualAnnealingWrapper", "SHGOWrapper", "DirectWrapper"} <= names
    assert {"BasinHoppingWrapper", "NevergradWrapper", "OptunaWrapper"} <= names


@pytest.mark.parametrize("e", WHOLE_RUN, ids=lambda e: e.name)
def test_losses_never_increase_and_params_end_at_the_best_point_ever_evaluated(e: Entry) -> None:
    model = e.problem()
    opt = e.factory(model.parameters())
    seen: list[tuple[float, torch.Tensor]] = []
    closure = _recording_closure(model, opt, seen)

    start = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    start_f = float(model().detach())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        losses = [float(opt.step(closure)) for _ in range(4)]
    assert losses[0] <= start_f
    assert losses == sorted(losses, reverse=True), losses
    best_f = min(f for f, _ in seen)
    assert losses[-1] == best_f
    now = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert float(model().detach()) == best_f
    assert any(torch.equal(now, x) for f, x in seen if f == best_f) or (best_f == start_f and torch.equal(now, start))


def test_direct_started_at_the_minimum_stays_there_and_keeps_scipy_counts() -> None:
    """scipy's DIRECT never samples the start (the box centre is elsewhere): the start still wins."""
    box = [(-2.0, 3.0)] * 3
    model = Rastrigin.at([0.0, 0.0, 0.0])
    opt = tzb.DirectWrapper(model.parameters(), {"bounds": box, "maxfun": 30})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = opt.step(lambda backward=True: model())
        ref = so.direct(rastrigin, box, maxfun=30)
    assert ref.fun > 0.0  # scipy's own answer is worse than the start
    assert float(loss) == 0.0 and all(float(p.detach().abs().max()) == 0.0 for p in model.parameters())
    assert opt.result.nfev == ref.nfev and opt.result.start_evaluated
    assert opt.result.start_fun == 0.0


def test_the_record_is_in_the_state_dict() -> None:
    model = Rastrigin.at([1.3, -0.7, 0.4])
    make = lambda p: tzb.NevergradWrapper(p, "TBPSA", budget=30, seed=0)  # noqa: E731
    opt = make(model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = float(opt.step(lambda backward=True: model()))
    best = opt.state_dict()["torchzero_bridge"]["state"]["best"]
    assert isinstance(best["x"], torch.Tensor) and best["f"] == loss
    other = make(Rastrigin.at([2.0, 2.0, 2.0]).parameters())
    other.load_state_dict(opt.state_dict())
    np.testing.assert_array_equal(other._best_x, best["x"].numpy())


DFO = [e for e in ENTRIES if issubclass(getattr(tzb, e.name.split("[")[0]), DerivativeFreeOptimizer)]


def test_every_derivative_free_optimizer_is_checked() -> None:
    assert {"SwarmOfOptimizers", "ParticleSwarm", "RandomWalk"} <= {e.name for e in DFO}


@pytest.mark.parametrize("e", DFO, ids=lambda e: e.name)
def test_after_every_step_of_a_search_the_parameters_hold_the_best_point_evaluated(e: Entry) -> None:
    """Checked after each of 8 steps: a member optimizer of SwarmOfOptimizers used to leave its own update."""
    model = e.problem()
    opt = e.factory(model.parameters())
    seen: list[tuple[float, torch.Tensor]] = []
    closure = _recording_closure(model, opt, seen)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(8):
            loss = float(opt.step(closure))
            now = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            assert loss == min(f for f, _ in seen), f"step {k + 1}"
            assert any(torch.equal(now, x) for f, x in seen if f == loss), f"step {k + 1}: not at the best point"
