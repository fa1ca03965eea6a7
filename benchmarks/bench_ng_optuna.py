"""Overhead of NevergradWrapper / OptunaWrapper over bare ask/tell loops, and batched evaluation.

Part 1 runs the same numpy function (a shifted sphere) through nevergrad's and optuna's own
ask/tell loops and through the wrappers (a torch tensor holding the parameters, a closure
calling the numpy function on it), side by side at 10, 100 and 1,000 parameters. Each cell is
the best of several interleaved repeats, in CPU time of this process (other jobs on the
machine do not inflate it); overhead = wrapper time / bare time - 1.

Part 2 fits two MLPs with NevergradWrapper (TwoPointsDE): one candidate at a time with a
plain closure, ``num_workers=8`` candidates per round evaluated one by one, and 8 per round
evaluated in one vectorized pass of a ``BatchObjective`` (and the same with 64 per round); it
reports evaluations per second.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_ng_optuna.py [--quick]
Writes benchmarks/results/ng_optuna.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import nevergrad as ng
import numpy as np
import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's package, installed or not
import torchzero_bridge as tzb

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.simplefilter("ignore")

RESULTS = Path(__file__).resolve().parent / "results" / "ng_optuna.json"
CLOCK = time.process_time  # CPU time of this process: other jobs on a shared machine do not inflate it


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - 0.5) ** 2))


# ---------------------------------------------------------------------- nevergrad
def ng_bare(name: str, x0: np.ndarray, budget: int) -> float:
    t = CLOCK()
    param = ng.p.Array(init=x0.copy())
    param.random_state = np.random.RandomState(0)
    opt = ng.optimizers.registry[name](parametrization=param, budget=budget)
    for _ in range(budget):
        cand = opt.ask()
        opt.tell(cand, sphere(cand.value))
    opt.recommend()
    return CLOCK() - t


def ng_ours(name: str, x0: np.ndarray, budget: int) -> float:
    t = CLOCK()
    w = torch.tensor(x0)
    opt = tzb.NevergradWrapper([w], name, budget=budget, seed=0)
    opt.step(lambda backward=True: sphere(w.numpy()))
    return CLOCK() - t


# ---------------------------------------------------------------------- optuna
def make_sampler(kind: str) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=0) if kind == "Random" else optuna.samplers.TPESampler(seed=0)


def optuna_bare(kind: str, x0: np.ndarray, n_trials: int) -> float:
    t = CLOCK()
    study = optuna.create_study(sampler=make_sampler(kind))
    names = [f"x{k}" for k in range(len(x0))]
    study.enqueue_trial(dict(zip(names, x0.tolist())))
    for _ in range(n_trials):
        trial = study.ask()
        x = np.array([trial.suggest_float(name, -1.0, 1.0) for name in names])
        study.tell(trial, sphere(x))
    study.best_trial.params  # noqa: B018 - the answer, as the wrapper reads it
    return CLOCK() - t


def optuna_ours(kind: str, x0: np.ndarray, n_trials: int) -> float:
    t = CLOCK()
    w = torch.tensor(x0)
    opt = tzb.OptunaWrapper([{"params": [w], "bounds": (-1.0, 1.0)}], make_sampler(kind), n_trials=n_trials)
    opt.step(lambda backward=True: sphere(w.numpy()))
    return CLOCK() - t


def overhead_table(quick: bool) -> list[dict]:
    repeats = 3 if quick else 5
    cases = []
    for n in (10, 100, 1000):
        scale = 0.3 if quick else 1.0
        cases += [
            ("nevergrad", "OnePlusOne", n, int(scale * {10: 2000, 100: 1500, 1000: 600}[n]), ng_bare, ng_ours),
            ("nevergrad", "CMA", n, int(scale * {10: 1000, 100: 300, 1000: 240}[n]), ng_bare, ng_ours),
            ("optuna", "Random", n, int(scale * {10: 600, 100: 150, 1000: 20}[n]), optuna_bare, optuna_ours),
            ("optuna", "TPE", n, int(scale * {10: 150, 100: 40, 1000: 8}[n]), optuna_bare, optuna_ours),
        ]
    rows = []
    head = ("library", "method", "params", "evals", "bare us/eval", "ours us/eval", "overhead")
    print("{:<10} {:<11} {:>6} {:>6} {:>13} {:>13} {:>9}".format(*head))
    for lib, method, n, evals, bare, ours in cases:
        x0 = np.linspace(-0.5, 0.5, n)
        bare(method, x0, min(evals, 5))  # warm-up (imports, caches)
        ours(method, x0, min(evals, 5))
        tb, to = [], []
        for _ in range(repeats):  # interleaved, so drifts in machine load hit both alike
            tb.append(bare(method, x0, evals))
            to.append(ours(method, x0, evals))
        b, o = min(tb) / evals * 1e6, min(to) / evals * 1e6
        row = {
            "library": lib, "method": method, "params": n, "evals": evals,
            "bare_us_per_eval": round(b, 2), "ours_us_per_eval": round(o, 2), "overhead": round(o / b - 1, 4),
        }  # fmt: skip
        rows.append(row)
        print(f"{lib:<10} {method:<11} {n:>6} {evals:>6} {b:>13.1f} {o:>13.1f} {100 * (o / b - 1):>8.1f}%")
    return rows


# ---------------------------------------------------------------------- batched evaluation
def batched_table(quick: bool) -> list[dict]:
    budget = 800 if quick else 2400
    rows = []
    for n_data, width in ((64, 8), (1024, 32)):
        torch.manual_seed(0)
        X = torch.randn(n_data, 8)
        y = torch.sin(X.sum(dim=1, keepdim=True))
        model = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
        start = [p.detach().clone() for p in model.parameters()]

        def loss_fn(m: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return ((m(X) - y) ** 2).mean()

        def closure(backward: bool = True, model: torch.nn.Module = model, X: torch.Tensor = X, y: torch.Tensor = y):
            return loss_fn(model, X, y)

        batch = tzb.BatchObjective(model, loss_fn, X, y)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"\nMLP 8-{width}-1 ({n_params} params) on {n_data} samples, TwoPointsDE, budget {budget}")
        print(f"{'mode':<40} {'evals/s':>9} {'vs one at a time':>17}")
        configs = [
            ("one at a time (plain closure)", 1, closure),
            ("num_workers=8, plain closure", 8, closure),
            ("num_workers=8, BatchObjective (vmap)", 8, batch),
            ("num_workers=64, plain closure", 64, closure),
            ("num_workers=64, BatchObjective (vmap)", 64, batch),
        ]
        base = None
        for label, workers, fn in configs:
            best = np.inf
            for _ in range(2 if quick else 3):
                with torch.no_grad():
                    for p, s0 in zip(model.parameters(), start):
                        p.copy_(s0)
                opt = tzb.NevergradWrapper(
                    model.parameters(), "TwoPointsDE", budget=budget, num_workers=workers, seed=0
                )
                t = CLOCK()
                opt.step(fn)
                best = min(best, CLOCK() - t)
            rate = budget / best
            base = base or rate
            rows.append(
                {"model": f"8-{width}-1", "samples": n_data, "params": n_params, "mode": label,
                 "num_workers": workers, "budget": budget, "evals_per_s": round(rate, 1),
                 "vs_one_at_a_time": round(rate / base, 3)}
            )  # fmt: skip
            print(f"{label:<40} {rate:>9.0f} {rate / base:>16.2f}x")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer evaluations and repeats")
    args = parser.parse_args()
    overhead = overhead_table(args.quick)
    batched = batched_table(args.quick)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "nevergrad": ng.__version__, "optuna": optuna.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "clock": "process_time", "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "quick": args.quick,
    }  # fmt: skip
    RESULTS.write_text(json.dumps({"meta": meta, "overhead": overhead, "batched": batched}, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
