"""Differential evolution on a small MLP: batched population evaluation vs one closure per individual.

Both runs use the same seed, ``popsize=15``, ``updating="deferred"`` and no polish, so they
evaluate exactly the same points (the script checks that they end at the same answer). The
serial run's per-evaluation bridge overhead (time outside the closure and outside scipy) is
measured by replaying the recorded losses through ``scipy.optimize.differential_evolution``
directly, which gives scipy's own time for the identical run.

Run (single thread)::

    OMP_NUM_THREADS=1 python benchmarks/bench_global.py

Prints a table and writes ``benchmarks/results/global.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import differential_evolution

import torchzero_bridge as tzb

RESULTS = Path(__file__).resolve().parent / "results" / "global.json"


def make_problem(hidden: int, samples: int, features: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
    X = torch.randn(samples, features)
    y = torch.sin(X[:, :1] * 2.0) + 0.1 * X[:, 1:2]
    return model, X, y


def mse(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.mean((model(X) - y) ** 2)


def run_de(model: torch.nn.Module, closure: Any, generations: int) -> tuple[tzb.DifferentialEvolutionWrapper, float]:
    """One DE run from the model's current parameters; the parameters are restored afterwards."""
    start = [p.detach().clone() for p in model.parameters()]
    opt = tzb.DifferentialEvolutionWrapper(
        [{"params": list(model.parameters()), "bounds": (-2.0, 2.0)}],
        rng=0,
        popsize=15,
        maxiter=generations,
        tol=0.0,
        polish=False,
        updating="deferred",
        threads=1,
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


def measure(hidden: int, samples: int, features: int, generations: int, chunks: list[int | None]) -> dict[str, Any]:
    """Serial and batched DE on one MLP, and scipy's own time for the identical run.

    The batched run is repeated for each chunk size; the fastest is reported as "batched".
    """
    model, X, y = make_problem(hidden, samples, features)
    n = sum(p.numel() for p in model.parameters())

    inside = [0.0]
    losses: list[float] = []

    def closure() -> torch.Tensor:
        t = time.perf_counter()
        with torch.no_grad():
            loss = mse(model, X, y)
        losses.append(float(loss))
        inside[0] += time.perf_counter() - t
        return loss

    serial, t_serial = run_de(model, closure, generations)

    # scipy's own time for the identical run: replay the recorded losses
    x0 = tzb.FlatParams(model.parameters()).read()
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
        [(-2.0, 2.0)] * n,
        rng=0,
        popsize=15,
        maxiter=generations,
        tol=0.0,
        polish=False,
        updating="deferred",
        x0=x0,
    )
    t_scipy = time.perf_counter() - t0
    if not np.array_equal(ref.x, serial.result.x):
        raise RuntimeError("the replay did not follow the identical run")

    per_chunk = []
    for chunk_size in chunks:
        batch = TimedBatch(model, mse, X, y, chunk_size=chunk_size)
        opt, seconds = run_de(model, batch, generations)
        per_chunk.append((seconds, chunk_size, batch.seconds, opt))
    t_batched, chunk_size, t_eval_batched, batched = min(per_chunk, key=lambda r: r[0])

    nfev_s, nfev_b = int(serial.result.nfev), int(batched.result.nfev)
    eval_serial = t_serial - t_scipy  # closure + bridge
    return {
        "parameters": n,
        "samples": samples,
        "hidden": hidden,
        "population": 15 * n,
        "generations": generations,
        "chunk_size": chunk_size,
        "evaluations": {"serial": nfev_s, "batched": nfev_b},
        "seconds": {"serial": t_serial, "batched": t_batched, "scipy_own": t_scipy},
        "de_evals_per_s": {"serial": nfev_s / t_serial, "batched": nfev_b / t_batched},
        "eval_only_evals_per_s": {"serial": nfev_s / eval_serial, "batched": nfev_b / t_eval_batched},
        "batched_seconds_by_chunk_size": {str(c): t for t, c, _, _ in per_chunk},
        "same_answer": bool(np.allclose(batched.result.x, serial.result.x, rtol=0, atol=1e-6)),
        "serial_per_eval_us": {
            "total": t_serial / nfev_s * 1e6,
            "closure": inside[0] / nfev_s * 1e6,
            "scipy": t_scipy / nfev_s * 1e6,
            "bridge_overhead": (t_serial - inside[0] - t_scipy) / nfev_s * 1e6,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--chunk-sizes", type=int, nargs="*", default=[0, 1024, 256], help="0 = no chunking")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    configs = [(12, 32), (12, 256), (24, 32), (24, 256)]  # (hidden units, samples): 121 and 241 parameters
    chunks = [c or None for c in args.chunk_sizes]
    rows = [measure(h, s, args.features, args.generations, chunks) for h, s in configs]

    print(f"Differential evolution, popsize 15, {args.generations} generations, updating='deferred', 1 thread")
    head = (
        f"{'params':>6} {'samples':>7} {'chunk':>5} {'evals':>7} | {'DE evals/s':^23} | "
        f"{'evaluation-only evals/s':^25} | {'serial us/eval':^29}"
    )
    print(head)
    sub = (
        f"{'':>6} {'':>7} {'':>5} {'':>7} | {'serial':>7} {'batched':>8} {'ratio':>6} | {'serial':>7} {'batched':>9} "
        f"{'ratio':>7} | {'closure':>8} {'scipy':>6} {'bridge':>7}"
    )
    print(sub)
    for r in rows:
        de, ev, us = r["de_evals_per_s"], r["eval_only_evals_per_s"], r["serial_per_eval_us"]
        print(
            f"{r['parameters']:>6} {r['samples']:>7} {r['chunk_size'] or 'all':>5} {r['evaluations']['serial']:>7} | "
            f"{de['serial']:>7.0f} "
            f"{de['batched']:>8.0f} {de['batched'] / de['serial']:>5.1f}x | {ev['serial']:>7.0f} {ev['batched']:>9.0f} "
            f"{ev['batched'] / ev['serial']:>6.1f}x | {us['closure']:>8.1f} {us['scipy']:>6.1f} "
            f"{us['bridge_overhead']:>7.1f}"
        )
        if not r["same_answer"]:
            print("  warning: batched and serial runs ended at different points")
    print(
        "DE evals/s include scipy's own per-individual work (the same in both modes); evaluation-only "
        "counts just the time spent evaluating (closure + bridge, or the vectorized passes)."
    )

    out = {
        "benchmark": "differential evolution on a small MLP: batched vs one closure call per individual",
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_global.py",
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
