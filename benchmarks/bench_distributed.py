"""Distributed benchmark: evaluations per second of population searches on a Dask LocalCluster.

The objective stands for an expensive simulation: a closure that integrates a small nonlinear
system (a fixed number of explicit Euler steps of a 16-state model whose coefficients are the
parameters), calibrated before the runs to cost about ``--cost-ms`` milliseconds per point on
one core. Rows: ``DifferentialEvolutionWrapper`` (population 64) and ``ParticleSwarm``
(64 particles), each serial (in this process) and with ``executor=`` a ``dask.distributed.Client``
over a ``LocalCluster`` of 1, 2 and 4 worker processes (one thread each, loopback only; with 2
workers also with Dask's statistical profiler turned off), for a 10 ms and a 1 ms objective.
A first row measures the machine's own limit: the same evaluations split over a plain process
pool of two, nothing shipped per point and no scheduler; a second measures Dask's own latency
(the time a generation of two one-row tasks spends outside the evaluations), and a last row
runs two workers on a population of 128, whose longer chunks spread that latency thinner.
Reported: evaluations per second (``nfev`` over the wall time of the steps, the cluster
already started and warmed up) and the speed-up over serial, as the median of ``--repeats``
paired ratios (a serial run and a Dask run side by side, so that the load of a shared machine
drifting between runs does not enter the ratio). Every distributed run is checked to end at
the serial run's loss and parameters.

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


def run(method: str, steps: int, executor: Any, generations: int, pop: int = POP) -> dict[str, Any]:
    w, closure = make_problem(steps)
    if method == "DE":
        opt: Any = tzb.DifferentialEvolutionWrapper(
            [w],
            {"bounds": [(-2.0, 2.0)] * 16},
            popsize=pop // 16,
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
        opt = tzb.ParticleSwarm([w], n_particles=pop, bounds=(-2.0, 2.0), seed=0, executor=executor)
        t = time.perf_counter()
        for _ in range(generations):
            loss = float(opt.step(closure))
        wall = time.perf_counter() - t
        nfev = opt.nfev
    return {"loss": loss, "x": w.detach().tolist(), "nfev": nfev, "wall_s": wall, "evals_per_s": nfev / wall}


def _evaluate_n(args: tuple[int, int]) -> float:
    """``n`` evaluations of the objective in this process (a plain process pool's task)."""
    steps, n = args
    torch.set_num_threads(1)
    _, closure = make_problem(steps)
    for _ in range(n):
        closure()
    return 0.0


def ceiling(steps: int, evals: int, processes: int, repeats: int) -> list[float]:
    """The machine's own limit: ``evals`` evaluations split over a plain process pool, against one process.

    Nothing is shipped per point and no scheduler runs; the ratio is what ``processes`` cores give
    this objective here, the most any executor could reach.
    """
    from multiprocessing import get_context

    ratios = []
    with get_context("spawn").Pool(processes) as pool:
        pool.map(_evaluate_n, [(steps, 2)] * processes)  # workers import torch first
        for _ in range(repeats):
            t = time.perf_counter()
            _evaluate_n((steps, evals))
            one = time.perf_counter() - t
            t = time.perf_counter()
            pool.map(_evaluate_n, [(steps, evals // processes)] * processes)
            ratios.append(one / (time.perf_counter() - t))
    return ratios


# (workers, Dask's statistical profiler on, population): the profiler samples each worker's stack
# every 10 ms; the larger population spreads a generation's fixed round trip over longer chunks
CONFIGS = [(1, True, POP), (2, True, POP), (2, False, POP), (4, True, POP), (2, True, 2 * POP)]


def _timed_rows(job: Any, X: Any) -> float:
    """A task that evaluates its rows and returns how long that took on the worker."""
    t = time.perf_counter()
    job.run(X)
    return time.perf_counter() - t


def round_trip_ms(client: Any, steps: int, repeats: int = 20) -> list[float]:
    """Milliseconds a generation of two one-row tasks spends outside the evaluations (Dask's latency)."""
    import numpy as np

    from torchzero_bridge.core.flat import FlatParams
    from torchzero_bridge.core.remote import RemoteEvaluator

    w, closure = make_problem(steps)
    flat = FlatParams([w])
    remote = RemoteEvaluator(client, closure, flat)
    rows = np.zeros((2, flat.n))
    remote.run_tasks(_timed_rows, [(rows[:1],), (rows[1:],)])
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        inside = remote.run_tasks(_timed_rows, [(rows[:1],), (rows[1:],)])
        out.append(1000 * (time.perf_counter() - t - max(inside)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer generations and only 1 and 2 workers")
    parser.add_argument("--repeats", type=int, default=3, help="serial/Dask pairs per row (median reported)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import dask
    from distributed import Client, LocalCluster

    torch.set_num_threads(1)
    generations = 3 if args.quick else 8
    repeats = 2 if args.quick else args.repeats
    configs = CONFIGS[:2] if args.quick else CONFIGS
    rows: list[dict[str, Any]] = []
    for cost_ms in (10.0, 1.0):
        steps = calibrate(cost_ms)
        limit = ceiling(steps, POP * 2, 2, repeats)
        rows.append(
            {
                "method": "plain process pool",
                "cost_ms": cost_ms,
                "workers": 2,
                "profiler": None,
                "population": POP * 2,
                "speedup": statistics.median(limit),
                "speedups": limit,
            }
        )
        for n, profiler, pop in configs:
            with (
                dask.config.set({"distributed.worker.profile.enabled": profiler}),
                LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                run("DE", steps, client, 1)  # warm-up: workers import torch and the package
                if n == 2 and profiler and pop == POP:
                    trips = round_trip_ms(client, steps)
                    rows.append(
                        {
                            "method": "Dask round trip (ms)",
                            "cost_ms": cost_ms,
                            "workers": 2,
                            "profiler": True,
                            "population": 2,
                            "speedup": statistics.median(trips),
                            "speedups": trips[:3],
                        }
                    )
                for m in ("DE", "ParticleSwarm"):
                    pairs = []
                    for _ in range(repeats):  # side by side: the machine's load drifts between runs
                        serial = run(m, steps, None, generations, pop)
                        r = run(m, steps, client, generations, pop)
                        same = r["loss"] == serial["loss"] and r["x"] == serial["x"]
                        assert same, f"{m} with {n} workers ended elsewhere than the serial run"
                        pairs.append((serial, r))
                    ratios = [r["evals_per_s"] / s0["evals_per_s"] for s0, r in pairs]
                    s0, r = pairs[sorted(range(repeats), key=lambda i: ratios[i])[repeats // 2]]
                    rows.append(
                        {
                            "method": m,
                            "cost_ms": cost_ms,
                            "workers": n,
                            "profiler": profiler,
                            "population": pop,
                            "loss": r["loss"],
                            "nfev": r["nfev"],
                            "serial_evals_per_s": s0["evals_per_s"],
                            "evals_per_s": r["evals_per_s"],
                            "speedup": statistics.median(ratios),
                            "speedups": ratios,
                        }
                    )
    print(
        f"{'method':<20} {'cost':>6} {'workers':>8} {'profiler':>8} {'pop':>5} {'serial/s':>9} {'dask/s':>9} "
        f"{'speed-up':>9}  pairs"
    )
    for r in rows:
        prof = "-" if r["profiler"] is None else ("on" if r["profiler"] else "off")
        rates = f"{r.get('serial_evals_per_s', float('nan')):>9.1f} {r.get('evals_per_s', float('nan')):>9.1f}"
        print(
            f"{r['method']:<20} {r['cost_ms']:>4.0f}ms {r['workers']:>8} {prof:>8} {r['population']:>5} {rates} "
            f"{r['speedup']:>8.2f}x  " + " ".join(f"{x:.2f}" for x in r["speedups"])
        )
    meta = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "population": POP, "generations": generations, "repeats": repeats, "rows": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
