"""Evaluations to reach a target loss: native derivative-free optimizers beside nevergrad's and pycma's.

Every method gets the same problems, the same start and exactly the same budget of loss
evaluations (the closure raises at the first evaluation past it and the run ends there):

* sphere, Rosenbrock, Rastrigin in 4 dimensions held in two tensors of shape (2,). Native
  optimizers get the box ``[-5.12, 5.12]`` (the SPSA-based rows run unbounded); of nevergrad's,
  random search and PSO (which sample the box) get it too, the others run unbounded, their
  default use (the start and the minima lie well inside the box);
* an MLP fitness: a 2 -> 16 -> 16 -> 1 tanh network (337 float32 weights, initialized from a fixed
  seed as ``nn.Linear`` does) fitted by MSE to 256 points of a smooth target generated here with
  a fixed seed. No box; every method starts from the network's initialization with an initial
  step of ``MLP_SIGMA`` (CMA's ``sigma0``, the walks' ``lr``, the swarm's ``init_std``, nevergrad's
  mutation sigma). Population methods evaluate each population in one vectorized pass
  (:class:`~torchzero_bridge.BatchObjective`), which changes their speed, not their evaluation count.

Each native optimizer sits beside an external optimizer of its family (random search,
(1+1)-ES "OnePlusOne" for walks/annealing/local searches and the SPSA-based rows, PSO, nevergrad's
own (mu, lambda)-ES for the evolution strategy, and pycma's ``CMAEvolutionStrategy`` driven by a
hand-written ask/tell loop with the same seed, options and budget for ``CMAESWrapper``).
``UndoOnRise``, ``BestOfLRs`` and ``MomentumToBest`` wrap the same inner optimizer, SPSA (central
differences, 2 evaluations a step) feeding Adam, shown unwrapped as ``SPSA+Adam``.
``EnsembleKalmanInversion`` runs in its scalar form (the loss as a one-output forward map, target 0)
everywhere and, on the MLP, also in its least-squares form on the 256 residuals.
For every run the script records the number of evaluations after which the best loss first fell
to the target, and the loss at the parameters the optimizer leaves (recomputed independently);
it prints medians over seeds and writes everything to ``benchmarks/results/derivative_free.json``.

Native settings on the small problems are the ones of ``tests/test_dfo_quality.py`` (the grid is
coarser, to fit a 4-dimensional grid in the budget); nevergrad runs with its defaults (it scales
its own steps). Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_derivative_free.py            # about 10 minutes on 2 busy cores
    OMP_NUM_THREADS=1 python benchmarks/bench_derivative_free.py --quick    # a smoke run
    OMP_NUM_THREADS=1 python benchmarks/bench_derivative_free.py --only mlp --mlp-budget 20000 \
        --rows ParticleSwarm,EvolutionStrategy,CMAESWrapper,pycma --out benchmarks/results/derivative_free_mlp20k.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import scipy.optimize
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torchzero_bridge as tzb  # noqa: E402
from torchzero_bridge.testing import Rosenbrock  # noqa: E402
from torchzero_bridge.testing.functions import Sphere, numpy_sphere  # noqa: E402
from torchzero_bridge.testing.global_functions import Rastrigin, rastrigin  # noqa: E402

BOX = (-5.12, 5.12)
SHIFT = 0.5
MLP_SIGMA = 0.1  # initial step of every method on the network's weights (CMA's sigma0, walks' lr...)


@dataclass(frozen=True)
class Problem:
    name: str
    target: float
    build: Callable[[], torch.nn.Module]
    numpy_f: Callable[[np.ndarray], float]
    rows: dict[str, tuple[Factory, str]]
    external: list[str]
    mlp: bool = False


Factory = Callable[[Any, int], Any]  # (closure with .model, seed) -> an object with .step(closure)


class BudgetSpent(Exception):
    """Raised by the closure at the first evaluation past the budget (the optimizer restores its best point)."""


class Counter:
    """A closure counting evaluations and the first one at which the target was reached.

    An evaluation past ``budget`` raises :class:`BudgetSpent` before it counts, so every method gets
    exactly the budget even when a step evaluates a whole population.
    """

    def __init__(self, model: torch.nn.Module, target: float, budget: float = math.inf) -> None:
        self.model, self.target, self.budget = model, target, budget
        self.n, self.best = 0, math.inf
        self.hit: int | None = None

    def record(self, f: float) -> None:
        if self.n >= self.budget:
            raise BudgetSpent
        self.n += 1
        if f < self.best:
            self.best = f
            if self.hit is None and f <= self.target:
                self.hit = self.n

    def __call__(self, backward: bool = True) -> torch.Tensor:
        if self.n >= self.budget:
            raise BudgetSpent
        loss = self.model()
        self.record(float(loss.detach()))
        if backward:
            loss.backward()
        return loss


# ---------------------------------------------------------------- the MLP fitness problem
def _mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    """256 points of a smooth target on [-2, 2]², fixed seed."""
    gen = torch.Generator().manual_seed(1234)
    X = torch.rand(256, 2, generator=gen) * 4.0 - 2.0
    y = torch.sin(1.5 * X[:, :1]) * torch.cos(X[:, 1:]) + 0.3 * X[:, :1]
    return X, y


MLP_X, MLP_Y = _mlp_data()


class MLP(torch.nn.Module):
    """2 -> 16 -> 16 -> 1, tanh, float32: 337 weights, initialized as ``nn.Linear`` does from a fixed seed."""

    sizes = ((2, 16), (16, 16), (16, 1))
    w0: torch.Tensor
    b0: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        for k, (a, b) in enumerate(self.sizes):
            bound = 1.0 / math.sqrt(a)
            self.register_parameter(f"w{k}", torch.nn.Parameter((torch.rand(a, b, generator=gen) * 2 - 1) * bound))
            self.register_parameter(f"b{k}", torch.nn.Parameter((torch.rand(b, generator=gen) * 2 - 1) * bound))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(torch.addmm(self.b0, X, self.w0))
        h = torch.tanh(torch.addmm(self.b1, h, self.w1))
        return torch.addmm(self.b2, h, self.w2)


def _mse(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(X) - y) ** 2).mean()


class CountingBatch(tzb.BatchObjective):
    """The MLP's MSE as a BatchObjective (populations in one vectorized pass) that counts every evaluation."""

    def __init__(self, model: torch.nn.Module, target: float, budget: int) -> None:
        super().__init__(model, _mse, MLP_X, MLP_Y)
        self.counter = Counter(model, target, budget)

    def __call__(self, backward: bool = True) -> torch.Tensor:
        if self.counter.n >= self.counter.budget:
            raise BudgetSpent
        loss = super().__call__(backward)
        self.counter.record(float(loss.detach()))
        return loss

    def evaluate(self, flat: Any, X: Any) -> np.ndarray:
        losses = super().evaluate(flat, X)
        for f in losses:
            self.counter.record(float(f))
        return losses

    def predict(self) -> torch.Tensor:
        """The predictions (EKI's forward map), counted as one evaluation of their MSE."""
        with torch.no_grad():
            pred = self.model(MLP_X)
            self.counter.record(float(((pred - MLP_Y) ** 2).mean()))
        return pred


def mlp_numpy(x: np.ndarray) -> float:
    """The MSE at the flat weight vector ``x`` (an independent evaluation in a fresh model)."""
    model = MLP()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(np.asarray(x), dtype=torch.float32), model.parameters())
        return float(_mse(model, MLP_X, MLP_Y))


class ClosureFree:
    """Adapts an optimizer whose ``step()`` takes no closure (EKI with ``forward=``) to the run loop."""

    def __init__(self, opt: torch.optim.Optimizer) -> None:
        self.opt = opt

    def step(self, closure: Any) -> Any:
        return self.opt.step()


# ---------------------------------------------------------------- rows
def _p(c: Any) -> list[torch.Tensor]:
    return list(c.model.parameters())


def _spsa_adam(lr: float, h: float, s: int, **kw: Any) -> tzb.SPSA:
    """The inner optimizer of the step-judging wrappers: SPSA (2 evaluations a step) feeding Adam."""
    return tzb.SPSA(h=h, seed=s, opt=lambda q: torch.optim.Adam(q, lr=lr), **kw)


def _cma_options(s: int, box: tuple[float, float] | None) -> dict[str, Any]:
    options: dict[str, Any] = {"seed": s + 1, "verbose": -9, "verb_log": 0, "verb_disp": 0}
    if box is not None:
        options["bounds"] = list(box)
    return options


# name -> (factory(closure, seed), nevergrad counterpart); rows after "SwarmOfOptimizers" are this release's
NATIVE: dict[str, tuple[Factory, str]] = {
    "RandomSearch": (lambda c, s: tzb.RandomSearch(_p(c), bounds=BOX, n_samples=100, seed=s), "RandomSearch"),
    "ShrinkingRandomSearch": (
        lambda c, s: tzb.ShrinkingRandomSearch(_p(c), lr=2.0, nsteps=3000, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "GridSearch": (lambda c, s: tzb.GridSearch(_p(c), bounds=BOX, step=2.0, batch_size=500), "OnePlusOne"),
    "SequentialSearch": (lambda c, s: tzb.SequentialSearch(_p(c), lr=0.5, bounds=BOX), "OnePlusOne"),
    "RandomWalk": (lambda c, s: tzb.RandomWalk(_p(c), lr=1.0, adapt=1.5, bounds=BOX, seed=s), "OnePlusOne"),
    "RandomWalk(order=2)": (
        lambda c, s: tzb.RandomWalk(_p(c), lr=0.1, order=2, adapt=1.2, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "AdaptiveOrderWalk": (
        lambda c, s: tzb.AdaptiveOrderWalk(_p(c), lr=1.0, max_order=3, adapt=1.5, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "AdaptiveOrderWalk(convex)": (
        lambda c, s: tzb.AdaptiveOrderWalk(_p(c), lr=1.0, max_order=3, convex=True, adapt=1.5, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "RandomWalk(AR1 0.5)": (
        lambda c, s: tzb.RandomWalk(_p(c), lr=1.0, adapt=1.5, distribution=tzb.AR1(0.5), bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "RandomWalk(Smoothed)": (
        lambda c, s: tzb.RandomWalk(_p(c), lr=1.0, adapt=1.5, distribution=tzb.Smoothed(), bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "SecondOrderRandomWalk": (
        lambda c, s: tzb.SecondOrderRandomWalk(_p(c), lr=1.0, adapt=1.5, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "SimulatedAnnealing": (
        lambda c, s: tzb.SimulatedAnnealing(_p(c), lr=1.0, init_temp=10.0, cooling=0.998, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "ParticleSwarm": (lambda c, s: tzb.ParticleSwarm(_p(c), n_particles=30, bounds=BOX, seed=s), "PSO"),
    "ParticleSwarm(size_schedule=linear)": (
        lambda c, s: tzb.ParticleSwarm(_p(c), n_particles=30, size_schedule="linear", bounds=BOX, seed=s),
        "PSO",
    ),
    "EvolutionStrategy": (
        lambda c, s: tzb.EvolutionStrategy(_p(c), lr=2.0, n_parents=10, n_offspring=50, bounds=BOX, seed=s),
        "ES(10,50)",
    ),
    "EvolutionStrategy(size_schedule=linear)": (
        lambda c, s: tzb.EvolutionStrategy(
            _p(c), lr=2.0, n_parents=10, n_offspring=50, size_schedule="linear", bounds=BOX, seed=s
        ),
        "ES(10,50)",
    ),
    "SwarmOfOptimizers(RandomWalk)": (
        lambda c, s: tzb.SwarmOfOptimizers(
            _p(c), lambda q: tzb.RandomWalk(q, lr=1.0, adapt=1.5), n=6, init_std=3.0, patience=20, bounds=BOX, seed=s
        ),
        "OnePlusOne",
    ),
    "SwarmOfOptimizers(breeding RandomWalk)": (
        lambda c, s: tzb.SwarmOfOptimizers(
            _p(c),
            lambda q: tzb.RandomWalk(q, lr=1.0, adapt=1.5),
            n=6,
            init_std=3.0,
            patience=20,
            mutate={"lr": 0.3},
            size_schedule=tzb.LinearGrowth(6, by=1, every=50, limit=10),
            bounds=BOX,
            seed=s,
        ),
        "OnePlusOne",
    ),
    "CMAESWrapper": (
        lambda c, s: tzb.CMAESWrapper([{"params": _p(c), "bounds": BOX}], 1.0, budget=100, seed=s + 1),
        "pycma",
    ),
    "EnsembleKalmanInversion": (
        lambda c, s: tzb.EnsembleKalmanInversion(_p(c), n_particles=20, step_size=1.0, bounds=BOX, seed=s),
        "CMA",
    ),
    "SPSA+Adam": (lambda c, s: _spsa_adam(0.05, 1e-3, s).bind(_p(c)), "OnePlusOne"),
    "SPSA+Adam(n_samples_schedule=linear)": (
        lambda c, s: _spsa_adam(0.05, 1e-3, s, n_samples_schedule="linear").bind(_p(c)),
        "OnePlusOne",
    ),
    "UndoOnRise(SPSA+Adam)": (
        lambda c, s: tzb.UndoOnRise(_p(c), _spsa_adam(0.05, 1e-3, s), grow=1.2),
        "OnePlusOne",
    ),
    "BestOfLRs(SPSA+Adam)": (
        lambda c, s: tzb.BestOfLRs(_p(c), _spsa_adam(0.05, 1e-3, s), multipliers=(0.5, 1.0, 2.0)),
        "OnePlusOne",
    ),
    "MomentumToBest(SPSA+Adam)": (
        lambda c, s: tzb.MomentumToBest(_p(c), _spsa_adam(0.05, 1e-3, s), pull=0.1),
        "OnePlusOne",
    ),
}

# the MLP: no box (weights are not box-constrained), steps of MLP_SIGMA from the network's own initialization
MLP_NATIVE: dict[str, tuple[Factory, str]] = {
    "RandomWalk": (lambda c, s: tzb.RandomWalk(_p(c), lr=MLP_SIGMA, adapt=1.5, seed=s), "OnePlusOne"),
    "AdaptiveOrderWalk": (
        lambda c, s: tzb.AdaptiveOrderWalk(_p(c), lr=MLP_SIGMA, max_order=3, adapt=1.5, seed=s),
        "OnePlusOne",
    ),
    "RandomWalk(Smoothed)": (
        lambda c, s: tzb.RandomWalk(_p(c), lr=MLP_SIGMA, adapt=1.5, distribution=tzb.Smoothed(), seed=s),
        "OnePlusOne",
    ),
    "ParticleSwarm": (
        lambda c, s: tzb.ParticleSwarm(_p(c), n_particles=30, init_std=MLP_SIGMA, seed=s),
        "PSO",
    ),
    "ParticleSwarm(size_schedule=linear)": (
        lambda c, s: tzb.ParticleSwarm(_p(c), n_particles=30, init_std=MLP_SIGMA, size_schedule="linear", seed=s),
        "PSO",
    ),
    "ParticleSwarm(init=fitted)": (
        lambda c, s: tzb.ParticleSwarm(_p(c), n_particles=30, init="fitted", seed=s),
        "PSO",
    ),
    "EvolutionStrategy": (
        lambda c, s: tzb.EvolutionStrategy(_p(c), lr=MLP_SIGMA, n_parents=10, n_offspring=50, seed=s),
        "ES(10,50)",
    ),
    "EvolutionStrategy(size_schedule=linear)": (
        lambda c, s: tzb.EvolutionStrategy(
            _p(c), lr=MLP_SIGMA, n_parents=10, n_offspring=50, size_schedule="linear", seed=s
        ),
        "ES(10,50)",
    ),
    "EvolutionStrategy(init=fitted)": (
        lambda c, s: tzb.EvolutionStrategy(_p(c), lr=MLP_SIGMA, n_parents=10, n_offspring=50, init="fitted", seed=s),
        "ES(10,50)",
    ),
    "SwarmOfOptimizers(RandomWalk)": (
        lambda c, s: tzb.SwarmOfOptimizers(
            _p(c), lambda q: tzb.RandomWalk(q, lr=MLP_SIGMA, adapt=1.5), n=6, init_std=MLP_SIGMA, patience=20, seed=s
        ),
        "OnePlusOne",
    ),
    "SwarmOfOptimizers(breeding RandomWalk)": (
        lambda c, s: tzb.SwarmOfOptimizers(
            _p(c),
            lambda q: tzb.RandomWalk(q, lr=MLP_SIGMA, adapt=1.5),
            n=6,
            init_std=MLP_SIGMA,
            patience=20,
            mutate={"lr": 0.3},
            size_schedule=tzb.LinearGrowth(6, by=1, every=50, limit=10),
            seed=s,
        ),
        "OnePlusOne",
    ),
    "CMAESWrapper": (
        lambda c, s: tzb.CMAESWrapper(_p(c), MLP_SIGMA, budget=1000, seed=s + 1),
        "pycma",
    ),
    "EnsembleKalmanInversion": (
        lambda c, s: tzb.EnsembleKalmanInversion(_p(c), n_particles=50, init_std=MLP_SIGMA, seed=s),
        "pycma",
    ),
    "EnsembleKalmanInversion(residuals)": (
        lambda c, s: ClosureFree(
            tzb.EnsembleKalmanInversion(
                _p(c), n_particles=50, forward=c.predict, target=MLP_Y, init_std=MLP_SIGMA, step_size=1.0, seed=s
            )
        ),
        "pycma",
    ),
    "SPSA+Adam": (lambda c, s: _spsa_adam(1e-2, 1e-3, s).bind(_p(c)), "OnePlusOne"),
    "SPSA+Adam(n_samples_schedule=linear)": (
        lambda c, s: _spsa_adam(1e-2, 1e-3, s, n_samples_schedule="linear").bind(_p(c)),
        "OnePlusOne",
    ),
    "UndoOnRise(SPSA+Adam)": (
        lambda c, s: tzb.UndoOnRise(_p(c), _spsa_adam(1e-2, 1e-3, s), grow=1.2),
        "OnePlusOne",
    ),
    "BestOfLRs(SPSA+Adam)": (
        lambda c, s: tzb.BestOfLRs(_p(c), _spsa_adam(1e-2, 1e-3, s), multipliers=(0.5, 1.0, 2.0)),
        "OnePlusOne",
    ),
    "MomentumToBest(SPSA+Adam)": (
        lambda c, s: tzb.MomentumToBest(_p(c), _spsa_adam(1e-2, 1e-3, s), pull=0.1),
        "OnePlusOne",
    ),
}


def _small(module: Callable[[list[float], list[float]], torch.nn.Module], x0: tuple[float, ...]) -> Any:
    return lambda: module(list(x0[:2]), list(x0[2:]))


SMALL_EXTERNAL = ["CMA", "ES(10,50)", "OnePlusOne", "PSO", "RandomSearch", "pycma"]
PROBLEMS = [
    Problem(
        "sphere",
        1e-6,
        _small(lambda a, b: Sphere(a, b, shift=SHIFT), (-1.2, 1.0, 0.8, -0.5)),
        lambda x: numpy_sphere(x, SHIFT),
        NATIVE,
        SMALL_EXTERNAL,
    ),
    Problem(
        "rosenbrock", 1e-2, _small(Rosenbrock, (-1.2, 1.0, -1.2, 1.0)), scipy.optimize.rosen, NATIVE, SMALL_EXTERNAL
    ),
    Problem(
        "rastrigin",
        1e-2,
        _small(Rastrigin, (2.3, -1.7, 3.1, -2.6)),
        lambda x: float(rastrigin(x)),
        NATIVE,
        SMALL_EXTERNAL,
    ),
    Problem("mlp", 1e-3, MLP, mlp_numpy, MLP_NATIVE, ["OnePlusOne", "pycma"], mlp=True),
]
SAMPLES_THE_BOX = ("RandomSearch", "PSO")  # nevergrad optimizers given the box; the others run unbounded


def nevergrad_optimizer(name: str, x0: np.ndarray, budget: int, seed: int, mlp: bool) -> Any:
    import nevergrad as ng

    param = ng.p.Array(init=x0.copy())
    if mlp:
        param.set_mutation(sigma=MLP_SIGMA)  # the same initial step as every other method on the network
    elif name in SAMPLES_THE_BOX:
        param.set_bounds(*BOX)
    param.random_state = np.random.RandomState(seed)
    if name == "ES(10,50)":
        family = ng.families.EvolutionStrategy(recombination_ratio=1.0, popsize=10, offsprings=50, only_offsprings=True)
        return family(parametrization=param, budget=budget)
    return getattr(ng.optimizers, name)(parametrization=param, budget=budget)


def _flat(model: torch.nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().reshape(-1).double().numpy() for p in model.parameters()])


def run_native(make: Factory, problem: Problem, seed: int, budget: int) -> dict[str, Any]:
    model = problem.build()
    closure: Any = (
        CountingBatch(model, problem.target, budget) if problem.mlp else Counter(model, problem.target, budget)
    )
    counter: Counter = closure.counter if problem.mlp else closure
    opt = make(closure, seed)
    t0 = time.perf_counter()
    idle = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tzb.ConvergedWarning)  # a converged walk ends its run (idle steps)
        try:
            while idle < 50:  # grid/coordinate searches may run out of points, walks converge
                before = counter.n
                opt.step(closure)
                idle = idle + 1 if counter.n == before else 0
        except BudgetSpent:
            pass
    seconds = time.perf_counter() - t0
    best = problem.numpy_f(_flat(model))  # independent check of the parameters the optimizer left
    return {"evals_to_target": counter.hit, "best": best, "evals": counter.n, "seconds": seconds}


def run_external(name: str, problem: Problem, seed: int, budget: int) -> dict[str, Any]:
    """A nevergrad optimizer, or pycma's own ask/tell loop ("pycma"), on the numpy function."""
    x0 = _flat(problem.build())
    tracker = Counter(torch.nn.Module(), problem.target, budget)
    t0 = time.perf_counter()
    if name == "pycma":
        import cma

        sigma0 = MLP_SIGMA if problem.mlp else 1.0
        options = _cma_options(seed, None if problem.mlp else BOX)
        options["maxfevals"] = budget
        es = cma.CMAEvolutionStrategy(x0, sigma0, options)
        try:
            while not es.stop():
                points = es.ask()
                losses = []
                for x in points:
                    losses.append(problem.numpy_f(np.asarray(x)))
                    tracker.record(losses[-1])  # BudgetSpent ends the run inside a generation
                es.tell(points, losses)
        except BudgetSpent:
            pass
    else:
        opt = nevergrad_optimizer(name, x0, budget, seed, problem.mlp)
        for _ in range(budget):
            cand = opt.ask()
            f = problem.numpy_f(cand.value)
            tracker.record(f)
            opt.tell(cand, f)
    seconds = time.perf_counter() - t0
    return {"evals_to_target": tracker.hit, "best": tracker.best, "evals": tracker.n, "seconds": seconds}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    hits = [r["evals_to_target"] for r in runs if r["evals_to_target"] is not None]
    return {
        "reached": len(hits),
        "seeds": len(runs),
        "median_evals_to_target": statistics.median(hits) if hits else None,
        "median_best": statistics.median(r["best"] for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "runs": runs,
    }


def fmt(summary: dict[str, Any]) -> str:
    evals = summary["median_evals_to_target"]
    reached = f"{summary['reached']}/{summary['seeds']}"
    seconds = summary["median_seconds"]
    return f"{'-' if evals is None else int(evals):>6} {reached:>5} {summary['median_best']:9.2e} {seconds:6.2f}"


def markdown(results: dict[str, Any]) -> str:
    """Saved results as a markdown table: one row per optimizer, one column per problem.

    A cell is ``median evaluations to the target (runs that reached it) / median best loss``;
    "n/a": the row is not run on that problem.
    """

    def cell(summary: dict[str, Any] | None) -> str:
        if summary is None:
            return "n/a"
        evals = summary["median_evals_to_target"]
        reached = f"{summary['reached']}/{summary['seeds']}"
        return f"{'–' if evals is None else int(evals)} ({reached}) / {summary['median_best']:.1e}"

    problems = list(results["native"])
    budgets = results.get("budgets", {})
    external = results.get("external", results.get("nevergrad", {}))
    head = " | ".join(
        f"{p} (target {results['targets'][p]:.0e}, {budgets.get(p, results['budget'])} evals)" for p in problems
    )
    lines = [f"| optimizer | family counterpart | {head} |", "|---|---|" + "---|" * len(problems)]
    methods = list(dict.fromkeys(m for p in problems for m in results["native"][p]))
    for method in methods:
        counterpart = next(
            results["native"][p][method]["nevergrad"] for p in problems if method in results["native"][p]
        )
        cells = " | ".join(cell(results["native"][p].get(method)) for p in problems)
        lines.append(f"| {method} | {_label(counterpart)} | {cells} |")
    for name in sorted({n for p in problems for n in external[p]}):
        cells = " | ".join(cell(external[p].get(name)) for p in problems)
        lines.append(f"| {_label(name)} | | {cells} |")
    return "\n".join(lines)


def _label(name: str) -> str:
    return "pycma ask/tell by hand" if name == "pycma" else f"nevergrad {name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=2000, help="loss evaluations per run (4-dimensional problems)")
    parser.add_argument("--mlp-budget", type=int, default=2000, help="loss evaluations per run on the MLP")
    parser.add_argument("--seeds", type=int, default=3, help="runs per method and problem")
    parser.add_argument("--quick", action="store_true", help="budgets 500 and 1000, one seed")
    parser.add_argument("--only", help="comma-separated problem names to run (default: all)")
    parser.add_argument("--rows", help="comma-separated row names to run, native or external (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "derivative_free.json")
    parser.add_argument("--markdown", type=Path, help="print the table of a saved JSON as markdown and exit")
    args = parser.parse_args()
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    budget, mlp_budget, seeds = (500, 1000, 1) if args.quick else (args.budget, args.mlp_budget, args.seeds)
    problems = [p for p in PROBLEMS if args.only is None or p.name in args.only.split(",")]
    if args.rows is not None:
        keep = set(args.rows.split(","))
        problems = [
            dataclasses.replace(
                p, rows={k: v for k, v in p.rows.items() if k in keep}, external=[e for e in p.external if e in keep]
            )
            for p in problems
        ]
    torch.set_num_threads(1)
    for noisy in ("nevergrad", "cma"):  # nevergrad's own warnings (bounds handling, injected points)
        warnings.filterwarnings("ignore", module=noisy)

    results: dict[str, Any] = {
        "budget": budget,
        "budgets": {p.name: mlp_budget if p.mlp else budget for p in problems},
        "seeds": seeds,
        "box": BOX,
        "mlp_sigma": MLP_SIGMA,
        "targets": {p.name: p.target for p in problems},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()},
        "native": {},
        "external": {},
    }
    cols = f"{'evals':>6} {'hit':>5} {'best':>9} {'s/run':>6}"
    header = f"{'problem':<11} {'method':<40} {cols}   {'counterpart':<12} {cols}"
    print(
        "evals = median evaluations to reach the target, hit = runs that reached it, best = median best loss "
        f"at the end, s/run = median seconds per run; {seeds} seed(s)"
    )
    print(header)
    print("-" * len(header))
    for problem in problems:
        n = results["budgets"][problem.name]
        print(f"{problem.name}: budget {n} evaluations")
        external = {
            name: summarize([run_external(name, problem, s, n) for s in range(seeds)]) for name in problem.external
        }
        results["external"][problem.name] = external
        results["native"][problem.name] = {}
        for method, (make, ng_name) in problem.rows.items():
            summary = summarize([run_native(make, problem, s, n) for s in range(seeds)])
            summary["nevergrad"] = ng_name
            results["native"][problem.name][method] = summary
            other = f"{ng_name:<12} {fmt(external[ng_name])}" if ng_name in external else ""
            print(f"{problem.name:<11} {method:<40} {fmt(summary)}   {other}", flush=True)
        blank = " " * len(cols)
        for name, summary in external.items():
            print(f"{problem.name:<11} {'':<40} {blank}   {name:<12} {fmt(summary)}")
        print(f"{'':<11} target {problem.target:.0e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
