"""Distributed benchmark: evaluations per second of population searches on a Dask LocalCluster.

The objective stands for an expensive simulation: a closure that integrates a small nonlinear
system (a fixed number of explicit Euler steps of a 16-state model whose coefficients are the
parameters), calibrated before the runs to cost about ``--cost-ms`` milliseconds per point on
one core. Rows: ``DifferentialEvolutionWrapper`` (population 64) and ``ParticleSwarm``
(64 particles), each serial (in this process) and with ``executor=`` a ``dask.distributed.Client``
over a ``LocalCluster`` of 1, 2 and 4 worker processes (one thread each, loopback only), for a
10 ms and a 1 ms objective. Reported: evaluations per second (``nfev`` over the wall time of the
steps, the cluster already started and warmed up) and the speed-up over serial, as the median of
``--repeats`` paired ratios (a serial run and a Dask run side by side, so that the load of a
shared machine drifting between runs does not enter the ratio). Every distributed run is checked
to end at the serial run's loss and parameters.

Run:  python benchmarks/bench_distributed.py            (writes benchmarks/results/distributed.json)
      python benchmarks/bench_distributed.py --quick    (fewer generations; a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

import torchzero_bridge as tzb  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "distributed.json"
POP = 64  # DE: popsize 4 x 16 parameters


def make_problem(steps: int) -> tuple[torch.nn.Parameter, Any]:
    """A 16-parameter damped system integrated for ``steps`` Euler steps; loss: distance to a target path."""
    w = torch.nn.Parameter(torch.full((16,), 0.5))
    target = torch.linspace(0.0, 1.0, 16)

    def closure(backward: bool = False) -> torch.Tensor:
        state = torch.zeros(16)
        with torch.no_grad():
            for _ in range(steps):
                state = state + 0.01 * (torch.tanh(w * state + 1.0) - 0.5 * state)
        return ((state - target) ** 2).sum()

    return w, closure


def calibrate(cost_ms: float) -> int:
    """Euler steps for one evaluation to take about ``cost_ms`` on this core."""
    _, closure = make_problem(200)
    closure()
    t = time.perf_counter()
    for _ in range(5):
        closure()
    per_step = (time.perf_counter() - t) / 5 / 200
    return max(1, round(cost_ms / 1000 / per_step))


def run(method: str, steps: int, executor: Any, generations: int) -> dict[str, Any]:
    w, closure = make_problem(steps)
    if method == "DE":
        opt: Any = tzb.DifferentialEvolutionWrapper(
            [w],
            {"bounds": [(-2.0, 2.0)] * 16},
            popsize=POP // 16,
            maxiter=generations,
            tol=0,
            polish=False,
            rng=0,
            updating="deferred",
            executor=executor,
        )
        t = time.perf_counter()
        loss = float(opt.step(closure))
        wall = time.perf_counter() - t
        nfev = int(opt.result.nfev)
    else:
        opt = tzb.ParticleSwarm([w], n_particles=POP, bounds=(-2.0, 2.0), seed=0, executor=executor)
        t = time.perf_counter()
        for _ in range(generations):
            loss = float(opt.step(closure))
        wall = time.perf_counter() - t
        nfev = opt.nfev
    return {"loss": loss, "x": w.detach().tolist(), "nfev": nfev, "wall_s": wall, "evals_per_s": nfev / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer generations and only 1 and 2 workers")
    parser.add_argument("--repeats", type=int, default=3, help="serial/Dask pairs per row (median reported)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    torch.set_num_threads(1)
    generations = 3 if args.quick else 8
    repeats = 2 if args.quick else args.repeats
    worker_counts = [1, 2] if args.quick else [1, 2, 4]
    rows: list[dict[str, Any]] = []
    for cost_ms in (10.0, 1.0):
        steps = calibrate(cost_ms)
        for n in worker_counts:
            with (
                LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                run("DE", steps, client, 1)  # warm-up: workers import torch and the package
                for m in ("DE", "ParticleSwarm"):
                    pairs = []
                    for _ in range(repeats):  # side by side: the machine's load drifts between runs
                        serial = run(m, steps, None, generations)
                        r = run(m, steps, client, generations)
                        same = r["loss"] == serial["loss"] and r["x"] == serial["x"]
                        assert same, f"{m} with {n} workers ended elsewhere than the serial run"
                        pairs.append((serial, r))
                    ratios = [r["evals_per_s"] / s0["evals_per_s"] for s0, r in pairs]
                    mid = sorted(range(repeats), key=lambda i: ratios[i])[repeats // 2]
                    s0, r = pairs[mid]
                    rows.append(
                        {
                            "method": m,
                            "cost_ms": cost_ms,
                            "workers": n,
                            "loss": r["loss"],
                            "nfev": r["nfev"],
                            "serial_evals_per_s": s0["evals_per_s"],
                            "evals_per_s": r["evals_per_s"],
                            "speedup": statistics.median(ratios),
                            "speedups": ratios,
                        }
                    )
    print(f"{'method':<14} {'cost':>6} {'workers':>8} {'nfev':>6} {'serial/s':>9} {'dask/s':>9} {'speed-up':>9}  pairs")
    for r in rows:
        print(
            f"{r['method']:<14} {r['cost_ms']:>4.0f}ms {r['workers']:>8} {r['nfev']:>6} "
            f"{r['serial_evals_per_s']:>9.1f} {r['evals_per_s']:>9.1f} {r['speedup']:>8.2f}x  "
            + " ".join(f"{x:.2f}" for x in r["speedups"])
        )
    meta = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "population": POP, "generations": generations, "repeats": repeats, "rows": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
