"""Differential evolution on small MLPs: batched population evaluation vs one closure per individual.

For each model (Linear-activation-Linear, float32, full batch) both runs use the same seed,
``popsize=15``, ``updating="deferred"`` and no polish, so they evaluate exactly the same
points (the script checks that they end at the same answer). The grid covers Tanh, ReLU and
SiLU, about 121, 241 and 481 parameters on 32 and 256 random samples with 8 features, and a
real full-batch case: scikit-learn's breast-cancer data (569 x 30, standardized) with a
30-8-1 MLP and a logistic loss (257 parameters; skipped when scikit-learn is missing).

Two throughputs per model:

- DE evals/s: individuals per second of the whole run, scipy's own work included.
- evaluation-only evals/s: individuals per second of evaluation alone. Serial: the run minus
  scipy's own time (closure plus bridge). Batched: the time inside the bridge's population
  evaluation (``Objective.values``: the vectorized passes plus the per-row bookkeeping).

scipy's own time for the serial run is measured by replaying the recorded losses through
``scipy.optimize.differential_evolution`` directly (the identical run with a free objective),
which also gives the serial run's bridge overhead per evaluation.

The script also times the activation kernels on their own (float32, one thread), because
torch's CPU ``tanh`` is much slower than its ``sigmoid``/``silu`` and numpy's ``tanh``: the
"act us" column is that kernel's cost per evaluation (samples x hidden units), a floor that
both paths pay.

Run (single thread, about 1-2 minutes)::

    OMP_NUM_THREADS=1 python benchmarks/bench_global.py

Prints a table and writes ``benchmarks/results/global.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import differential_evolution

import torchzero_bridge as tzb
from torchzero_bridge.core.objective import Objective

RESULTS = Path(__file__).resolve().parent / "results" / "global.json"
ACTIVATIONS: dict[str, type[torch.nn.Module]] = {"Tanh": torch.nn.Tanh, "ReLU": torch.nn.ReLU, "SiLU": torch.nn.SiLU}
GRID = [(12, 32), (12, 256), (24, 32), (24, 256), (48, 32), (48, 256)]  # (hidden, samples): 121, 241, 481 params
BOUND = 2.0
# the DE settings of every run here, the bridge's and scipy's replay alike (they must match)
DE_OPTIONS: dict[str, Any] = {"rng": 0, "popsize": 15, "tol": 0.0, "polish": False, "updating": "deferred"}


class Problem:
    """A model, its data and a pure loss ``loss(model, X, y)``."""

    def __init__(
        self, name: str, activation: str, hidden: int, X: torch.Tensor, y: torch.Tensor, loss: Callable[..., Any]
    ) -> None:
        torch.manual_seed(0)
        self.name, self.activation, self.hidden = name, activation, hidden
        act = ACTIVATIONS[activation]
        self.model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), act(), torch.nn.Linear(hidden, 1))
        self.X, self.y, self.loss = X, y, loss


def mse(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.mean((model(X) - y) ** 2)


def logistic(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(model(X), y)


def synthetic(activation: str, hidden: int, samples: int, features: int = 8) -> Problem:
    torch.manual_seed(0)
    X = torch.randn(samples, features)
    y = torch.sin(X[:, :1] * 2.0) + 0.1 * X[:, 1:2]
    return Problem("random", activation, hidden, X, y, mse)


def breast_cancer(activation: str) -> Problem | None:
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError:
        return None
    data = load_breast_cancer()
    X = (data.data - data.data.mean(0)) / data.data.std(0)
    return Problem(
        "breast-cancer",
        activation,
        8,
        torch.tensor(X, dtype=torch.float32),
        torch.tensor(data.target, dtype=torch.float32)[:, None],
        logistic,
    )


def activation_kernels(elements: int = 1 << 16, repeats: int = 7) -> dict[str, float]:
    """ns per element of each activation kernel on float32 data, best of ``repeats``."""
    x = torch.randn(elements)
    out = torch.empty(elements)
    xn, outn = x.numpy(), out.numpy()
    kernels: dict[str, Callable[[], Any]] = {
        "torch.tanh": lambda: torch.tanh(x, out=out),
        "torch.sigmoid": lambda: torch.sigmoid(x, out=out),
        "torch.nn.functional.silu": lambda: torch.nn.functional.silu(x),
        "torch.relu": lambda: torch.relu(x),
        "numpy.tanh": lambda: np.tanh(xn, out=outn),
    }
    loops = max(1, (1 << 22) // elements)
    result = {}
    for name, f in kernels.items():
        f()
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(loops):
                f()
            best = min(best, (time.perf_counter() - t) / loops)
        result[name] = best / elements * 1e9
    return result


KERNEL_OF = {"Tanh": "torch.tanh", "ReLU": "torch.relu", "SiLU": "torch.nn.functional.silu"}


def run_de(model: torch.nn.Module, closure: Any, generations: int) -> tuple[tzb.DifferentialEvolutionWrapper, float]:
    """One DE run from the model's current parameters; the parameters are restored afterwards."""
    start = [p.detach().clone() for p in model.parameters()]
    opt = tzb.DifferentialEvolutionWrapper(
        [{"params": list(model.parameters()), "bounds": (-BOUND, BOUND)}],
        maxiter=generations,
        threads=1,
        **DE_OPTIONS,
    )
    t0 = time.perf_counter()
    opt.step(closure)
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        for p, s in zip(model.parameters(), start):
            p.copy_(s)
    return opt, elapsed


class TimedBatch(tzb.BatchObjective):
    """A BatchObjective that adds up the time spent in its vectorized passes."""

    seconds = 0.0

    def evaluate(self, flat: tzb.FlatParams, X: Any) -> np.ndarray:
        t = time.perf_counter()
        out = super().evaluate(flat, X)
        self.seconds += time.perf_counter() - t
        return out


@contextlib.contextmanager
def timed_population_calls() -> Iterator[list[float]]:
    """Add up the time spent in ``Objective.values`` (the bridge's batched evaluation)."""
    total = [0.0]
    original = Objective.values

    def values(self: Objective, X: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        try:
            return original(self, X)
        finally:
            total[0] += time.perf_counter() - t

    Objective.values = values  # type: ignore[method-assign]
    try:
        yield total
    finally:
        Objective.values = original  # type: ignore[method-assign]


def measure(problem: Problem, generations: int, chunks: list[Any], repeats: int) -> dict[str, Any]:
    """Serial and batched DE on one problem, and scipy's own time for the identical serial run.

    Each timing is the best of ``repeats`` interleaved repetitions. The batched run is
    repeated for each chunk size; the fastest is reported as "batched".
    """
    model, X, y, loss = problem.model, problem.X, problem.y, problem.loss
    n = sum(p.numel() for p in model.parameters())
    samples = X.shape[0]
    x0 = tzb.FlatParams(model.parameters()).read()

    def serial_run() -> tuple[tzb.DifferentialEvolutionWrapper, float, float, list[float]]:
        inside = [0.0]
        losses: list[float] = []

        def closure() -> torch.Tensor:
            t = time.perf_counter()
            with torch.no_grad():
                value = loss(model, X, y)
            losses.append(float(value))
            inside[0] += time.perf_counter() - t
            return value

        opt, seconds = run_de(model, closure, generations)
        return opt, seconds, inside[0], losses

    def replay_run(losses: list[float]) -> tuple[Any, float]:
        """scipy's own time for the identical run: the recorded losses fed back in order."""
        replay = iter(losses)
        last: list[Any] = [None, 0.0]

        def recorded(x: np.ndarray) -> float:
            if last[0] is not None and np.array_equal(x, last[0]):
                return last[1]  # the wrapper's memo answered this one without a closure run
            last[0], last[1] = x.copy(), next(replay)
            return last[1]

        t0 = time.perf_counter()
        ref = differential_evolution(
            recorded,
            [(-BOUND, BOUND)] * n,
            maxiter=generations,
            x0=x0,
            **DE_OPTIONS,
        )
        return ref, time.perf_counter() - t0

    t_serial = t_inside = t_scipy = float("inf")
    batched: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        serial, seconds, inside, losses = serial_run()
        t_serial, t_inside = min(t_serial, seconds), min(t_inside, inside)
        ref, seconds = replay_run(losses)
        t_scipy = min(t_scipy, seconds)
        if not np.array_equal(ref.x, serial.result.x):
            raise RuntimeError("the replay did not follow the identical run")
        for chunk_size in chunks:
            batch = TimedBatch(model, loss, X, y, chunk_size=chunk_size)
            with timed_population_calls() as in_values:
                opt, seconds = run_de(model, batch, generations)
            r = batched.setdefault(str(chunk_size), {"chunk": chunk_size, "opt": opt})
            r["per_pass"] = batch.points_per_pass(tzb.FlatParams(model.parameters()), DE_OPTIONS["popsize"] * n)
            r["seconds"] = min(r.get("seconds", float("inf")), seconds)
            r["values_seconds"] = min(r.get("values_seconds", float("inf")), in_values[0])
            r["passes_seconds"] = min(r.get("passes_seconds", float("inf")), batch.seconds)
    best = min(batched.values(), key=lambda r: r["seconds"])
    opt = best["opt"]

    nfev_s, nfev_b = int(serial.result.nfev), int(opt.result.nfev)
    eval_serial = t_serial - t_scipy  # closure + bridge
    return {
        "dataset": problem.name,
        "activation": problem.activation,
        "parameters": n,
        "samples": samples,
        "features": X.shape[1],
        "hidden": problem.hidden,
        "population": DE_OPTIONS["popsize"] * n,
        "generations": generations,
        "repeats": repeats,
        "chunk_size": best["chunk"],
        "points_per_pass": best["per_pass"],
        "evaluations": {"serial": nfev_s, "batched": nfev_b},
        "seconds": {
            "serial": t_serial,
            "batched": best["seconds"],
            "scipy_own_serial": t_scipy,
            "batched_population_calls": best["values_seconds"],
            "batched_vectorized_passes": best["passes_seconds"],
        },
        "de_evals_per_s": {"serial": nfev_s / t_serial, "batched": nfev_b / best["seconds"]},
        "eval_only_evals_per_s": {
            "serial": nfev_s / eval_serial,
            "batched": nfev_b / best["values_seconds"],
            "batched_passes_only": nfev_b / best["passes_seconds"],
        },
        "batched_seconds_by_chunk_size": {k: r["seconds"] for k, r in batched.items()},
        "same_answer": bool(np.allclose(opt.result.x, serial.result.x, rtol=0, atol=1e-6)),
        "serial_per_eval_us": {
            "total": t_serial / nfev_s * 1e6,
            "closure": t_inside / nfev_s * 1e6,
            "scipy": t_scipy / nfev_s * 1e6,
            "bridge_overhead": (t_serial - t_inside - t_scipy) / nfev_s * 1e6,
        },
    }


def parse_chunk(text: str) -> Any:
    if text == "auto":
        return "auto"
    value = int(text)
    return None if value == 0 else value


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions; each timing is the best")
    parser.add_argument(
        "--chunk-sizes",
        type=parse_chunk,
        nargs="*",
        default=["auto"],
        help="BatchObjective chunk sizes to try (the fastest is reported): 'auto' (the default), 0 = no chunking",
    )
    parser.add_argument("--activations", nargs="*", default=list(ACTIVATIONS), choices=list(ACTIVATIONS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    kernels = activation_kernels()
    warm = synthetic("Tanh", 12, 32)  # first-call costs (dispatch, vmap setup) stay out of the table
    run_de(warm.model, lambda: warm.loss(warm.model, warm.X, warm.y), 1)
    run_de(warm.model, tzb.BatchObjective(warm.model, warm.loss, warm.X, warm.y), 1)
    problems: list[Problem] = []
    for act in args.activations:
        problems += [synthetic(act, h, s) for h, s in GRID]
        real = breast_cancer(act)
        if real is not None:
            problems.append(real)
    rows = [measure(p, args.generations, args.chunk_sizes, args.repeats) for p in problems]
    again = activation_kernels()  # measured before and after the runs; the better of the two is kept
    kernels = {name: min(v, again[name]) for name, v in kernels.items()}
    for r in rows:  # the activation kernel alone: samples x hidden units per evaluation
        r["activation_kernel_us_per_eval"] = r["samples"] * r["hidden"] * kernels[KERNEL_OF[r["activation"]]] / 1e3

    print(
        f"Differential evolution, popsize {DE_OPTIONS['popsize']}, {args.generations} generations, "
        f"updating={DE_OPTIONS['updating']!r}, 1 thread, "
        f"float32, best of {args.repeats} interleaved repetitions"
    )
    head = (
        f"{'data':>13} {'act':>4} {'params':>6} {'samples':>7} {'chunk':>5} {'evals':>6} | {'DE evals/s':^23} | "
        f"{'evaluation-only evals/s':^26} | {'serial us/eval':^22} | {'act us':>6}"
    )
    print(head)
    sub = (
        f"{'':>13} {'':>4} {'':>6} {'':>7} {'':>5} {'':>6} | {'serial':>7} {'batched':>8} {'ratio':>6} | "
        f"{'serial':>7} {'batched':>9} {'ratio':>8} | {'closure':>7} {'scipy':>6} {'bridge':>7} | {'':>6}"
    )
    print(sub)
    for r in rows:
        de, ev, us = r["de_evals_per_s"], r["eval_only_evals_per_s"], r["serial_per_eval_us"]
        ratio = ev["batched"] / ev["serial"]
        print(
            f"{r['dataset']:>13} {r['activation']:>4} {r['parameters']:>6} {r['samples']:>7} {r['points_per_pass']:>5} "
            f"{r['evaluations']['serial']:>6} | {de['serial']:>7.0f} {de['batched']:>8.0f} "
            f"{de['batched'] / de['serial']:>5.1f}x | {ev['serial']:>7.0f} {ev['batched']:>9.0f} "
            f"{ratio:>6.1f}x{'*' if ratio >= 10 else ' '} | {us['closure']:>7.1f} {us['scipy']:>6.1f} "
            f"{us['bridge_overhead']:>7.1f} | {r['activation_kernel_us_per_eval']:>6.2f}"
        )
        if not r["same_answer"]:
            print("  warning: batched and serial runs ended at different points")
    print(
        "chunk = points per vectorized pass; * = evaluation-only ratio of 10x or more. DE evals/s include scipy's "
        "own per-individual work (the same in both modes); evaluation-only counts just the time spent evaluating "
        "(closure + bridge, or the bridge's batched calls). act us = the activation kernel alone, per evaluation."
    )
    k = kernels
    print(
        f"Activation kernels, float32, 1 thread, 65536 elements: torch.tanh {k['torch.tanh']:.2f} ns/element, "
        f"torch.sigmoid {k['torch.sigmoid']:.2f}, silu {k['torch.nn.functional.silu']:.2f}, "
        f"relu {k['torch.relu']:.2f}, numpy.tanh {k['numpy.tanh']:.2f}: torch's CPU tanh is "
        f"{k['torch.tanh'] / k['torch.sigmoid']:.0f}x its sigmoid, so with Tanh both paths pay that one kernel "
        "and the batched pass is bound by it."
    )

    out = {
        "benchmark": "differential evolution on small MLPs: batched vs one closure call per individual",
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_global.py",
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
        "activation_kernels_ns_per_element": {"elements": 1 << 16, "dtype": "float32", **kernels},
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    shown = args.out.resolve()
    with contextlib.suppress(ValueError):
        shown = shown.relative_to(Path.cwd())
    print(f"wrote {shown}")


if __name__ == "__main__":
    main()
