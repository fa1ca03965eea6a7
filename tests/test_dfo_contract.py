"""Promises every derivative-free optimizer keeps, checked for all of them.

* every step returns the lowest loss of all closure runs so far, and the parameters hold a
  point where it was seen (checked by an independent numpy evaluation);
* ``state_dict`` round-trips through ``torch.save``: a fresh optimizer (even with another
  seed) continues exactly as the saved one;
* seeds reproduce runs; batched and one-by-one population evaluation agree;
* a failing closure leaves the parameters at the best point; non-finite losses are never kept.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.optimize
import torch
from dfo_helpers import PROBLEMS, Spy, flat_values

import torchzero_bridge as tzb
from torchzero_bridge.errors import NonFiniteLossWarning
from torchzero_bridge.testing.functions import batch_objective, make_closure

B = (-3.0, 3.0)

Factory = Callable[..., torch.optim.Optimizer]

METHODS: dict[str, Factory] = {
    "RandomSearch": lambda p, seed=0: tzb.RandomSearch(p, bounds=B, n_samples=4, seed=seed),
    "ShrinkingRandomSearch": lambda p, seed=0: tzb.ShrinkingRandomSearch(p, lr=1.0, nsteps=40, n_samples=3, seed=seed),
    "GridSearch": lambda p, seed=0: tzb.GridSearch(p, bounds=B, step=1.0, batch_size=7),
    "SequentialSearch": lambda p, seed=0: tzb.SequentialSearch(p, lr=0.5, points=2),
    "RandomWalk": lambda p, seed=0: tzb.RandomWalk(p, lr=0.3, order=2, adapt=1.5, seed=seed),
    "SecondOrderRandomWalk": lambda p, seed=0: tzb.SecondOrderRandomWalk(p, lr=0.3, adapt=1.5, seed=seed),
    "SimulatedAnnealing": lambda p, seed=0: tzb.SimulatedAnnealing(p, lr=0.5, init_temp=5.0, cooling=0.9, seed=seed),
    "ParticleSwarm": lambda p, seed=0: tzb.ParticleSwarm(p, n_particles=6, bounds=B, seed=seed),
    "EvolutionStrategy": lambda p, seed=0: tzb.EvolutionStrategy(p, lr=0.5, n_parents=2, n_offspring=6, seed=seed),
    "SwarmOfOptimizers": lambda p, seed=0: tzb.SwarmOfOptimizers(
        p, lambda q: tzb.RandomWalk(q, lr=0.3, adapt=1.5), n=3, patience=2, gravity=0.2, seed=seed
    ),
    "SwarmOfOptimizers-sgd": lambda p, seed=0: tzb.SwarmOfOptimizers(
        p, lambda q: torch.optim.SGD(q, lr=1e-3, momentum=0.5), n=3, patience=2, init_std=0.3, seed=seed
    ),
}
STOCHASTIC = [m for m in METHODS if m not in ("GridSearch", "SequentialSearch")]
POPULATION = [
    "RandomSearch",
    "ShrinkingRandomSearch",
    "GridSearch",
    "SequentialSearch",
    "ParticleSwarm",
    "EvolutionStrategy",
]

ROSEN = PROBLEMS["rosen"]


def _steps(opt: torch.optim.Optimizer, closure: Callable[..., torch.Tensor], k: int) -> list[float]:
    return [float(opt.step(closure)) for _ in range(k)]


@pytest.mark.parametrize("name", list(METHODS))
def test_step_returns_best_seen_and_params_hold_it(name: str) -> None:
    model = ROSEN.model()
    spy = Spy(model)
    opt = METHODS[name](list(model.parameters()))
    previous = math.inf
    for _ in range(15):
        loss = float(opt.step(spy))
        x = flat_values(model)
        _, best_f = spy.best()
        assert loss <= previous  # the best loss never increases
        previous = loss
        assert loss == best_f  # the lowest loss of every closure run so far
        assert ROSEN.numpy_f(x) == pytest.approx(loss, rel=1e-12, abs=1e-15)  # independent evaluation
        seen_at_best = [xs for xs, fs in zip(spy.xs, spy.fs) if fs == best_f]
        assert any(np.array_equal(x, xs) for xs in seen_at_best)
    assert opt.nfev == len(spy.fs)


@pytest.mark.parametrize("name", list(METHODS))
def test_state_dict_round_trip_resumes_identically(name: str) -> None:
    model = ROSEN.model()
    opt = METHODS[name](list(model.parameters()), seed=0)
    closure = make_closure(model)
    _steps(opt, closure, 6)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    saved_x = flat_values(model)
    expected = _steps(opt, closure, 6)
    expected_x = flat_values(model)

    other = ROSEN.model(start=tuple(saved_x))
    resumed = METHODS[name](list(other.parameters()), seed=12345)  # its own seed is overwritten
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    got = _steps(resumed, make_closure(other), 6)
    assert got == expected
    assert np.array_equal(flat_values(other), expected_x)
    assert resumed.nfev == opt.nfev


@pytest.mark.parametrize("name", STOCHASTIC)
def test_seed_reproduces_and_differs(name: str) -> None:
    runs = {}
    for key, seed in (("a", 3), ("b", 3), ("c", 4)):
        model = ROSEN.model()
        runs[key] = (
            _steps(METHODS[name](list(model.parameters()), seed=seed), make_closure(model), 8),
            flat_values(model),
        )
    assert runs["a"][0] == runs["b"][0] and np.array_equal(runs["a"][1], runs["b"][1])
    assert not np.array_equal(runs["a"][1], runs["c"][1])


def test_torch_manual_seed_reproduces_unseeded_runs() -> None:
    out = []
    for _ in range(2):
        torch.manual_seed(7)
        model = ROSEN.model()
        opt = tzb.RandomWalk(model.parameters(), lr=0.2)
        out.append(_steps(opt, make_closure(model), 10))
    assert out[0] == out[1]


@pytest.mark.parametrize("name", POPULATION)
def test_batched_evaluation_matches_serial(name: str) -> None:
    results = []
    for batched in (False, True):
        model = ROSEN.model()
        opt = METHODS[name](list(model.parameters()), seed=5)
        closure = batch_objective(model) if batched else make_closure(model)
        losses = _steps(opt, closure, 10)
        results.append((losses, flat_values(model), opt.nfev))
    (serial, x_serial, n_serial), (batched_losses, x_batched, n_batched) = results
    assert n_serial == n_batched
    np.testing.assert_allclose(batched_losses, serial, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(x_batched, x_serial, rtol=1e-12, atol=1e-14)


def test_batched_population_is_one_call_per_step() -> None:
    model = ROSEN.model()
    batch = batch_objective(model)
    calls = []
    original = batch.evaluate

    def counting(flat, X):
        calls.append(len(X))
        return original(flat, X)

    batch.evaluate = counting  # type: ignore[method-assign]
    opt = tzb.ParticleSwarm(model.parameters(), n_particles=8, seed=0)
    _steps(opt, batch, 4)
    assert calls == [7, 8, 8, 8]  # first step: particle 0 is the evaluated start


@pytest.mark.parametrize("name", list(METHODS))
def test_failing_closure_leaves_best_point(name: str) -> None:
    model = ROSEN.model()
    spy = Spy(model)
    opt = METHODS[name](list(model.parameters()))
    _steps(opt, spy, 3)
    runs = len(spy.fs)

    def failing(backward: bool = True) -> torch.Tensor:
        if len(spy.fs) >= runs + 2:
            raise RuntimeError("boom")
        return spy(backward)

    with pytest.raises(RuntimeError, match="boom"):
        for _ in range(50):
            opt.step(failing)
    best_x, best_f = spy.best()
    assert ROSEN.numpy_f(flat_values(model)) == pytest.approx(best_f, rel=1e-12)
    assert np.array_equal(flat_values(model), best_x) or ROSEN.numpy_f(flat_values(model)) == best_f


@pytest.mark.parametrize("name", ["RandomWalk", "SimulatedAnnealing", "ParticleSwarm", "EvolutionStrategy"])
def test_nonfinite_losses_are_never_kept(name: str) -> None:
    model = ROSEN.model()
    closure = make_closure(model)

    def nan_far_away(backward: bool = True) -> torch.Tensor:
        loss = closure(backward)
        return loss if loss < 30 else torch.tensor(math.nan)  # the start is at 24.2

    opt = METHODS[name](list(model.parameters()))
    with pytest.warns(NonFiniteLossWarning):
        losses = _steps(opt, nan_far_away, 20)
    assert all(math.isfinite(v) for v in losses)
    assert ROSEN.numpy_f(flat_values(model)) == pytest.approx(losses[-1])


def test_value_only_calls_run_without_grad() -> None:
    model = ROSEN.model()
    seen = []

    def closure(backward: bool = True) -> torch.Tensor:
        seen.append((backward, torch.is_grad_enabled()))
        return model()

    opt = tzb.EvolutionStrategy(model.parameters(), seed=0)
    _steps(opt, closure, 2)
    assert set(seen) == {(False, False)}


def test_plain_closure_leaves_no_stale_gradient() -> None:
    model = ROSEN.model()

    def closure() -> torch.Tensor:
        for p in model.parameters():
            p.grad = None
        loss = model()
        loss.backward()
        return loss

    opt = tzb.RandomWalk(model.parameters(), lr=0.5, seed=0)
    for _ in range(20):
        opt.step(closure)
        grads = [p.grad for p in model.parameters()]
        if any(g is not None for g in grads):  # kept only when computed at the parameters' value
            x = flat_values(model)
            expected = scipy.optimize.rosen_der(x)
            got = np.concatenate([g.reshape(-1).numpy() for g in grads])
            np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_outside_change_of_parameters_becomes_the_incumbent() -> None:
    model = ROSEN.model()
    spy = Spy(model)
    opt = tzb.RandomWalk(model.parameters(), lr=0.01, seed=0)
    _steps(opt, spy, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(5.0)  # much worse than the current incumbent
    runs = len(spy.fs)
    loss = float(opt.step(spy))
    assert np.array_equal(spy.xs[runs], np.full(3, 5.0))  # the new point was evaluated first
    assert loss <= spy.fs[runs]
    assert ROSEN.numpy_f(flat_values(model)) == pytest.approx(loss)
    assert loss > 100  # it follows the new point instead of jumping back to the old best


def test_lr_scheduler_drives_the_step_size() -> None:
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    counter = iter(range(10**6))
    opt = tzb.RandomWalk([w], lr=1.0, on_reject="undo", generator=torch.Generator().manual_seed(0))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    g = torch.Generator().manual_seed(0)
    expected = torch.zeros(3, dtype=torch.float64)
    for k in range(4):
        opt.step(lambda: -float(next(counter)))  # strictly decreasing: every move is kept
        expected += 0.5**k * torch.randn(3, generator=g, dtype=torch.float64)
        sched.step()
    torch.testing.assert_close(w.detach(), expected)


def test_float32_parameters_hold_representable_best() -> None:
    model = ROSEN.model(dtype=torch.float32)
    opt = tzb.ParticleSwarm(model.parameters(), n_particles=8, seed=0)
    closure = make_closure(model)
    losses = _steps(opt, closure, 10)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert closure(backward=False).item() == losses[-1]
    assert opt.nfev == 8 * 10  # no re-evaluation: the stored best equals the float32 parameters


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(METHODS))
def test_runs_on_cuda(name: str) -> None:
    model = ROSEN.model().cuda()
    opt = METHODS[name](list(model.parameters()))
    losses = _steps(opt, make_closure(model), 5)
    assert all(p.is_cuda for p in model.parameters())
    assert ROSEN.numpy_f(flat_values(model)) == pytest.approx(losses[-1], rel=1e-9)


@pytest.mark.parametrize("name", list(METHODS))
def test_added_param_group_restarts_the_method(name: str) -> None:
    model = ROSEN.model()
    first, second = list(model.parameters())
    opt = METHODS[name]([first])
    closure = make_closure(model)
    _steps(opt, closure, 3)
    extra = {"params": [second], "lr": 0.3} if "lr" in opt.defaults else {"params": [second]}
    if name == "GridSearch":
        extra.update(bounds=B, step=1.0)
    opt.add_param_group(extra)
    losses = _steps(opt, closure, 5)
    assert ROSEN.numpy_f(flat_values(model)) == pytest.approx(losses[-1])
    assert losses == sorted(losses, reverse=True)
