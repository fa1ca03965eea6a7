"""Core benchmarks: bridge overhead per evaluation, exact-Hessian Newton methods, thread settings.

Overhead is the time of ``Objective.fun_and_grad(x)`` minus the time inside the closure, over
distinct vectors ``x``; the baseline is one bare copy of each of the same vectors (into a
buffer, or into a new array), so cache effects are the same on both sides. Each repetition
uses a fresh Objective that first evaluates four other points, so the times are steady-state
(its pooled buffers already exist); the closure leaves a new gradient tensor in ``.grad`` on
every call, as ``loss.backward()`` does.

Run:  python benchmarks/bench_core.py            (writes benchmarks/results/core.json)
      python benchmarks/bench_core.py --quick    (fewer repetitions)

Every ratio is measured side by side in one run; absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torchzero_bridge as tzb

RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ---------------------------------------------------------------------- overhead per evaluation
def overhead(n_params: int, n_tensors: int, evals: int, repeat: int) -> dict[str, Any]:
    """Time per fun_and_grad call outside the closure (and outside any solver)."""
    sizes = [n_params // n_tensors] * n_tensors
    sizes[0] += n_params - sum(sizes)
    params = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in sizes]
    grads = [torch.ones(s, dtype=torch.float64) for s in sizes]
    inside = [0.0]

    def closure(backward: bool = True) -> float:
        t = time.perf_counter()
        if backward:
            for p, g in zip(params, grads):  # what loss.backward() leaves behind: a new tensor
                p.grad = g.clone()
        inside[0] += time.perf_counter() - t
        return 1.0

    flat = tzb.FlatParams(params)
    xs = [np.full(n_params, float(i)) for i in range(evals)]
    warm = [np.full(n_params, -1.0 - i) for i in range(4)]

    per_eval = []
    for _ in range(repeat):
        obj = tzb.Objective(flat, closure)  # fresh memo each repetition
        for x in warm:  # steady state: the memo's pooled buffers exist before timing starts
            obj.fun_and_grad(x)
        inside[0] = 0.0
        t = time.perf_counter()
        for x in xs:
            obj.fun_and_grad(x)
        per_eval.append((time.perf_counter() - t - inside[0]) / evals)
    bare = np.empty(n_params)

    def copy_each() -> None:  # the same distinct vectors, so cache effects match
        for x in xs:
            np.copyto(bare, x)

    def new_copy_each() -> None:
        for x in xs:
            x.copy()

    copy_time = _median_time(copy_each, repeat) / evals
    new_copy_time = _median_time(new_copy_each, repeat) / evals
    ours = statistics.median(per_eval)
    return {
        "n_params": n_params,
        "n_tensors": n_tensors,
        "overhead_us": ours * 1e6,
        "bare_copy_into_buffer_us": copy_time * 1e6,
        "bare_copy_new_array_us": new_copy_time * 1e6,
        "overhead_over_copy": ours / copy_time,
        "overhead_over_new_copy": ours / new_copy_time,
    }


# ---------------------------------------------------------------------- Newton methods
def _logreg_data(n_samples: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) / np.sqrt(n_features)
    w = rng.normal(size=n_features)
    y = (X @ w + 0.5 * rng.normal(size=n_samples) > 0).astype(np.float64)
    return X, y


def newton(method: str, n_features: int, n_samples: int, lam: float, repeat: int) -> dict[str, Any]:
    X, y = _logreg_data(n_samples, n_features)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def f(w: np.ndarray) -> float:
        z = X @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * lam * w @ w)

    def g(w: np.ndarray) -> np.ndarray:
        s = 1.0 / (1.0 + np.exp(-(X @ w)))
        return X.T @ (s - y) / n_samples + lam * w

    def hp(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        s = 1.0 / (1.0 + np.exp(-(X @ w)))
        return X.T @ (s * (1 - s) * (X @ v)) / n_samples + lam * v

    memo: dict[str, np.ndarray] = {}

    def hp_cached(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The same product, reusing the curvature weights while ``w`` is unchanged (no X @ w)."""
        if "w" not in memo or not np.array_equal(memo["w"], w):
            s = 1.0 / (1.0 + np.exp(-(X @ w)))
            memo["w"], memo["d"] = w.copy(), s * (1 - s) / n_samples
        return X.T @ (memo["d"] * (X @ v)) + lam * v

    x0 = np.zeros(n_features)
    ref = {}

    def run_ref() -> None:
        ref["res"] = minimize(f, x0, jac=g, hessp=hp, method=method)

    def run_ref_cached() -> None:
        memo.clear()
        ref["cached"] = minimize(f, x0, jac=g, hessp=hp_cached, method=method)

    def make(hvp_method: str):
        w = torch.zeros(n_features, dtype=torch.float64, requires_grad=True)
        opt = tzb.MinimizeWrapper([w], method=method, hvp_method=hvp_method)

        def closure(backward: bool = True) -> torch.Tensor:
            opt.zero_grad()
            z = Xt @ w
            loss = torch.nn.functional.softplus(z).sub(yt * z).mean() + 0.5 * lam * (w @ w)
            if backward:
                loss.backward()
            return loss

        return opt, closure, w

    out: dict[str, Any] = {"method": method, "n_params": n_features}

    def run_ours(hvp_method: str) -> None:
        opt, closure, _ = make(hvp_method)
        opt.step(closure)
        out.setdefault(hvp_method, {})["result"] = opt.result

    def run_dense() -> None:
        """What existing bridges do: a dense autograd Hessian, then H @ p for each product."""
        cache: dict[str, Any] = {}

        def dense_hessp(w: np.ndarray, v: np.ndarray) -> np.ndarray:
            key = w.tobytes()
            if cache.get("key") != key:

                def loss_of(wt: torch.Tensor) -> torch.Tensor:
                    z = Xt @ wt
                    return torch.nn.functional.softplus(z).sub(yt * z).mean() + 0.5 * lam * (wt @ wt)

                cache["H"] = torch.autograd.functional.hessian(loss_of, torch.tensor(w)).numpy()
                cache["key"] = key
            return cache["H"] @ v

        out["dense_result"] = minimize(f, x0, jac=g, hessp=dense_hessp, method=method)

    t_ref = _median_time(run_ref, repeat)
    t_ref_cached = _median_time(run_ref_cached, repeat)
    t_auto = _median_time(lambda: run_ours("autograd"), repeat)
    # the matrix-vector products both sides are made of, timed alone (torch's kernels vs numpy's)
    v_n, u_s = np.ones(n_features), np.ones(n_samples)
    v_t, u_t = torch.from_numpy(v_n), torch.from_numpy(u_s)
    mv_np = _median_time(lambda: (X @ v_n, X.T @ u_s), 5 * repeat)
    mv_torch = _median_time(lambda: (Xt @ v_t, Xt.T @ u_t), 5 * repeat)
    t_central = _median_time(lambda: run_ours("central"), max(1, repeat // 2))
    t_dense = _median_time(run_dense, 1)
    r_ref = ref["res"]
    r_auto = out["autograd"]["result"]
    out.update(
        numpy_reference_s=t_ref,
        autograd_s=t_auto,
        central_fd_s=t_central,
        dense_hessian_s=t_dense,
        cached_reference_s=t_ref_cached,
        autograd_over_reference=t_auto / t_ref,
        autograd_over_cached_reference=t_auto / t_ref_cached,
        matvec_pair_torch_over_numpy=mv_torch / mv_np,
        central_over_reference=t_central / t_ref,
        dense_over_reference=t_dense / t_ref,
        reference_nit=int(r_ref.nit),
        autograd_nit=int(r_auto.nit),
        reference_nfev=int(r_ref.nfev),
        autograd_nfev=int(r_auto.nfev),
        autograd_nhev=int(r_auto.nhev),
        max_abs_dx=float(np.max(np.abs(r_ref.x - r_auto.x))),
    )
    del out["autograd"], out["central"], out["dense_result"]
    return out


# ---------------------------------------------------------------------- threads
def threads_run(repeat: int) -> dict[str, Any]:
    """The same L-BFGS-B fit of an MLP with one thread and with default thread settings."""
    rng = np.random.default_rng(0)
    Xn = rng.normal(size=(2000, 32))
    yn = np.sin(Xn[:, :4].sum(1, keepdims=True))

    def fit() -> float:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1)).double()
        X, y = torch.tensor(Xn), torch.tensor(yn)
        opt = tzb.MinimizeWrapper(model.parameters(), method="L-BFGS-B", options={"maxiter": 150})

        def closure(backward: bool = True) -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(X), y)
            if backward:
                loss.backward()
            return loss

        return float(opt.step(closure))

    default_threads = torch.get_num_threads()
    t_default = _median_time(fit, repeat)
    torch.set_num_threads(1)
    try:
        t_one = _median_time(fit, repeat)
    finally:
        torch.set_num_threads(default_threads)
    return {
        "torch_default_threads": default_threads,
        "default_threads_s": t_default,
        "one_thread_s": t_one,
        "default_over_one": t_default / t_one,
    }


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
    }

    torch.set_num_threads(1)
    rows = [
        overhead(n, k, 2000 if n <= 50_000 else 20, repeat)
        for n, k in [(2, 1), (1000, 1), (1000, 10), (1000, 100), (50_000, 10), (1_000_000, 1), (1_000_000, 10)]
    ]
    results["overhead"] = rows
    print("\n## Bridge overhead per evaluation (fun_and_grad outside the closure, 1 thread)\n")
    print(
        _table(
            rows,
            [
                "n_params",
                "n_tensors",
                "overhead_us",
                "bare_copy_into_buffer_us",
                "bare_copy_new_array_us",
                "overhead_over_copy",
                "overhead_over_new_copy",
            ],
        )
    )

    newton_rows = [newton(m, 1000, 10_000, 1e-3, repeat) for m in ("Newton-CG", "trust-krylov")]
    results["newton"] = newton_rows
    print("\n## Exact Hessian-vector products: L2 logistic regression, 1000 parameters, 10000 samples (1 thread)\n")
    print(
        "numpy reference: hessp recomputes X @ w per product; cached reference: it keeps the curvature weights "
        "while w is unchanged, as the autograd graph does. matvec pair: X @ v and X.T @ u, torch over numpy.\n"
    )
    print(
        _table(
            newton_rows,
            [
                "method",
                "numpy_reference_s",
                "cached_reference_s",
                "autograd_s",
                "autograd_over_reference",
                "autograd_over_cached_reference",
                "matvec_pair_torch_over_numpy",
                "central_over_reference",
                "dense_over_reference",
                "reference_nit",
                "autograd_nit",
                "max_abs_dx",
            ],
        )
    )

    torch.set_num_threads(os.cpu_count() or 1)
    results["threads"] = threads_run(repeat)
    print("\n## Default threads vs one thread (L-BFGS-B, MLP 32-64-1 on 2000 samples)\n")
    print(
        _table([results["threads"]], ["torch_default_threads", "default_threads_s", "one_thread_s", "default_over_one"])
    )

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {RESULTS / 'core.json'}")


if __name__ == "__main__":
    main()
