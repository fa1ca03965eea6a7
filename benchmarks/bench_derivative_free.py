"""Evaluations to reach a target loss: native derivative-free optimizers beside nevergrad's.

Every method gets the same problems (sphere, Rosenbrock, Rastrigin in 4 dimensions held in two
tensors of shape (2,)), the same start and the same budget of loss evaluations. Native
optimizers get the box ``[-5.12, 5.12]``; of nevergrad's, random search and PSO (which sample
the box) get it too, the others run unbounded, their default use (the start and the minima
lie well inside the box). Each native optimizer sits beside the nevergrad optimizer of its
family (random search, (1+1)-ES "OnePlusOne" for walks/annealing/local searches, PSO, CMA and
nevergrad's own (mu, lambda)-ES for the evolution strategy). For every run the script records
the number of evaluations after which the best loss first fell to the target, and the best
loss at the end of the budget; it prints medians over seeds and writes everything to
``benchmarks/results/derivative_free.json``.

Native settings are the ones of ``tests/test_dfo_quality.py`` (the grid is coarser, to fit
a 4-dimensional grid in the budget); nevergrad runs with its defaults (it scales its own
steps). Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_derivative_free.py            # about 2 minutes
    OMP_NUM_THREADS=1 python benchmarks/bench_derivative_free.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
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


@dataclass(frozen=True)
class Problem:
    name: str
    start: tuple[float, ...]
    target: float
    build: Callable[[list[float], list[float]], torch.nn.Module]
    numpy_f: Callable[[np.ndarray], float]


PROBLEMS = [
    Problem(
        "sphere", (-1.2, 1.0, 0.8, -0.5), 1e-6, lambda a, b: Sphere(a, b, shift=SHIFT), lambda x: numpy_sphere(x, SHIFT)
    ),
    Problem("rosenbrock", (-1.2, 1.0, -1.2, 1.0), 1e-2, Rosenbrock, scipy.optimize.rosen),
    Problem("rastrigin", (2.3, -1.7, 3.1, -2.6), 1e-2, Rastrigin, lambda x: float(rastrigin(x))),
]

Factory = Callable[[list[torch.Tensor], int], torch.optim.Optimizer]

# name -> (factory(params, seed), nevergrad counterpart)
NATIVE: dict[str, tuple[Factory, str]] = {
    "RandomSearch": (lambda p, s: tzb.RandomSearch(p, bounds=BOX, n_samples=100, seed=s), "RandomSearch"),
    "ShrinkingRandomSearch": (
        lambda p, s: tzb.ShrinkingRandomSearch(p, lr=2.0, nsteps=3000, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "GridSearch": (lambda p, s: tzb.GridSearch(p, bounds=BOX, step=2.0, batch_size=500), "OnePlusOne"),
    "SequentialSearch": (lambda p, s: tzb.SequentialSearch(p, lr=0.5, bounds=BOX), "OnePlusOne"),
    "RandomWalk": (lambda p, s: tzb.RandomWalk(p, lr=1.0, adapt=1.5, bounds=BOX, seed=s), "OnePlusOne"),
    "RandomWalk(order=2)": (
        lambda p, s: tzb.RandomWalk(p, lr=0.1, order=2, adapt=1.2, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "AdaptiveOrderWalk": (
        lambda p, s: tzb.AdaptiveOrderWalk(p, lr=1.0, max_order=3, adapt=1.5, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "AdaptiveOrderWalk(convex)": (
        lambda p, s: tzb.AdaptiveOrderWalk(p, lr=1.0, max_order=3, convex=True, adapt=1.5, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "RandomWalk(AR1 0.5)": (
        lambda p, s: tzb.RandomWalk(p, lr=1.0, adapt=1.5, distribution=tzb.AR1(0.5), bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "SecondOrderRandomWalk": (
        lambda p, s: tzb.SecondOrderRandomWalk(p, lr=1.0, adapt=1.5, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "SimulatedAnnealing": (
        lambda p, s: tzb.SimulatedAnnealing(p, lr=1.0, init_temp=10.0, cooling=0.998, bounds=BOX, seed=s),
        "OnePlusOne",
    ),
    "ParticleSwarm": (lambda p, s: tzb.ParticleSwarm(p, n_particles=30, bounds=BOX, seed=s), "PSO"),
    "EvolutionStrategy": (
        lambda p, s: tzb.EvolutionStrategy(p, lr=2.0, n_parents=10, n_offspring=50, bounds=BOX, seed=s),
        "ES(10,50)",
    ),
    "SwarmOfOptimizers(RandomWalk)": (
        lambda p, s: tzb.SwarmOfOptimizers(
            p, lambda q: tzb.RandomWalk(q, lr=1.0, adapt=1.5), n=6, init_std=3.0, patience=20, bounds=BOX, seed=s
        ),
        "OnePlusOne",
    ),
}
EXTRA_NEVERGRAD = ["CMA"]  # shown beside the evolution strategy
SAMPLES_THE_BOX = ("RandomSearch", "PSO")  # nevergrad optimizers given the box; the others run unbounded


def nevergrad_optimizer(name: str, x0: np.ndarray, budget: int, seed: int) -> Any:
    import nevergrad as ng

    param = ng.p.Array(init=x0.copy())
    if name in SAMPLES_THE_BOX:
        param.set_bounds(*BOX)
    param.random_state = np.random.RandomState(seed)
    if name == "ES(10,50)":
        family = ng.families.EvolutionStrategy(recombination_ratio=1.0, popsize=10, offsprings=50, only_offsprings=True)
        return family(parametrization=param, budget=budget)
    return getattr(ng.optimizers, name)(parametrization=param, budget=budget)


class Counter:
    """A closure counting evaluations and the first one at which the target was reached."""

    def __init__(self, model: torch.nn.Module, target: float) -> None:
        self.model, self.target = model, target
        self.n, self.best, self.hit = 0, math.inf, None

    def record(self, f: float) -> None:
        self.n += 1
        if f < self.best:
            self.best = f
            if self.hit is None and f <= self.target:
                self.hit = self.n

    def __call__(self, backward: bool = True) -> torch.Tensor:
        loss = self.model()
        self.record(float(loss.detach()))
        if backward:
            loss.backward()
        return loss


def run_native(make: Factory, problem: Problem, seed: int, budget: int) -> dict[str, Any]:
    x0 = list(problem.start)
    model = problem.build(x0[:2], x0[2:])
    counter = Counter(model, problem.target)
    opt = make(list(model.parameters()), seed)
    t0 = time.perf_counter()
    idle = 0
    while counter.n < budget and idle < 50:  # grid/coordinate searches may run out of points
        before = counter.n
        opt.step(counter)
        idle = idle + 1 if counter.n == before else 0
    seconds = time.perf_counter() - t0
    x = np.concatenate([p.detach().reshape(-1).numpy() for p in model.parameters()])
    best = problem.numpy_f(x)  # independent check of the parameters the optimizer left
    return {"evals_to_target": counter.hit, "best": best, "evals": counter.n, "seconds": seconds}


def run_nevergrad(name: str, problem: Problem, seed: int, budget: int) -> dict[str, Any]:
    opt = nevergrad_optimizer(name, np.array(problem.start), budget, seed)
    tracker = Counter(torch.nn.Module(), problem.target)
    t0 = time.perf_counter()
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

    A cell is ``median evaluations to the target (runs that reached it) / median best loss``.
    """

    def cell(summary: dict[str, Any]) -> str:
        evals = summary["median_evals_to_target"]
        reached = f"{summary['reached']}/{summary['seeds']}"
        return f"{'–' if evals is None else int(evals)} ({reached}) / {summary['median_best']:.0e}"

    problems = list(results["native"])
    head = " | ".join(f"{p} (target {results['targets'][p]:.0e})" for p in problems)
    lines = [f"| optimizer | family counterpart | {head} |", "|---|---|" + "---|" * len(problems)]
    for method in results["native"][problems[0]]:
        counterpart = results["native"][problems[0]][method]["nevergrad"]
        cells = " | ".join(cell(results["native"][p][method]) for p in problems)
        lines.append(f"| {method} | nevergrad {counterpart} | {cells} |")
    for name in results["nevergrad"][problems[0]]:
        cells = " | ".join(cell(results["nevergrad"][p][name]) for p in problems)
        lines.append(f"| nevergrad {name} | | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=5000, help="loss evaluations per run")
    parser.add_argument("--seeds", type=int, default=3, help="runs per method and problem")
    parser.add_argument("--quick", action="store_true", help="budget 500, one seed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "derivative_free.json")
    parser.add_argument("--markdown", type=Path, help="print the table of a saved JSON as markdown and exit")
    args = parser.parse_args()
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    budget, seeds = (500, 1) if args.quick else (args.budget, args.seeds)
    torch.set_num_threads(1)
    for noisy in ("nevergrad", "cma"):  # nevergrad's own warnings (bounds handling, injected points)
        warnings.filterwarnings("ignore", module=noisy)

    results: dict[str, Any] = {
        "budget": budget,
        "seeds": seeds,
        "box": BOX,
        "targets": {p.name: p.target for p in PROBLEMS},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()},
        "native": {},
        "nevergrad": {},
    }
    ng_names = sorted({ng_name for _, ng_name in NATIVE.values()} | set(EXTRA_NEVERGRAD))
    cols = f"{'evals':>6} {'hit':>5} {'best':>9} {'s/run':>6}"
    header = f"{'problem':<11} {'method':<30} {cols}   {'nevergrad':<12} {cols}"
    print(
        f"budget {budget} evaluations, {seeds} seed(s); evals = median evaluations to reach the target, "
        "hit = runs that reached it, best = median best loss at the end, s/run = median seconds per run"
    )
    print(header)
    print("-" * len(header))
    for problem in PROBLEMS:
        results["nevergrad"][problem.name] = {
            name: summarize([run_nevergrad(name, problem, s, budget) for s in range(seeds)]) for name in ng_names
        }
        results["native"][problem.name] = {}
        for method, (make, ng_name) in NATIVE.items():
            summary = summarize([run_native(make, problem, s, budget) for s in range(seeds)])
            summary["nevergrad"] = ng_name
            results["native"][problem.name][method] = summary
            ng_summary = results["nevergrad"][problem.name][ng_name]
            print(f"{problem.name:<11} {method:<30} {fmt(summary)}   {ng_name:<12} {fmt(ng_summary)}")
        for name in EXTRA_NEVERGRAD:
            blank = " " * len(cols)
            print(f"{problem.name:<11} {'':<30} {blank}   {name:<12} {fmt(results['nevergrad'][problem.name][name])}")
        print(f"{'':<11} target {problem.target:.0e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
