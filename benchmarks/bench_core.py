"""Core benchmarks: bridge overhead per evaluation, exact-Hessian Newton methods, thread settings.

Overhead is the time of ``Objective.fun_and_grad(x)`` minus the time inside the closure, over
distinct vectors ``x``. Three baselines are timed on the same vectors: a bare copy into one
reused buffer (destination in cache), a bare copy into the parameters right after the closure
ran (the cache state the bridge meets), and the floor, the copies the contract requires done by
hand (see :func:`overhead`). Each repetition uses a fresh Objective that first evaluates four
other points, so the times are steady-state (its pooled buffers already exist); the closure
leaves a new gradient tensor in ``.grad`` on every call, as ``loss.backward()`` does. Overhead
and Newton rows are measured with one torch thread and with torch's default (one per CPU).

Run:  python benchmarks/bench_core.py            (writes benchmarks/results/core.json; leave
                                                  OMP_NUM_THREADS unset so the default rows use torch's default)
      python benchmarks/bench_core.py --quick    (fewer repetitions)
      python benchmarks/bench_core.py --many-only  (only the many-tensor rows, printed)

Every ratio is measured side by side in one run; absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torchzero_bridge as tzb

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_THREADS = torch.get_num_threads()  # torch's default here (one per physical core unless OMP_NUM_THREADS is set)


@contextlib.contextmanager
def _threads(k: int) -> Iterator[None]:
    """Run with ``k`` torch threads and ``k`` BLAS threads (numpy's, used by the references)."""
    old = torch.get_num_threads()
    torch.set_num_threads(k)
    try:
        with threadpool_limits(limits=k, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(old)


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ---------------------------------------------------------------------- overhead per evaluation
LARGE = 1 << 16  # the bridge copies with torch's threads from this many entries when it has several
PIECE = 1 << 16  # and, with one thread, writes and keeps large vectors in pieces of this many entries


class _Copier:
    """Bare copies from flat vectors into fixed destination pieces, chosen as the bridge chooses.

    Large vectors with several torch threads: torch's copy, which splits the work over its
    threads (numpy's never does); otherwise numpy's ``copyto``. Destinations are wrapped once,
    outside the timed calls.
    """

    def __init__(self, dst: list[np.ndarray]) -> None:
        self.dst = [d.reshape(-1) for d in dst]
        self.spans, a = [], 0
        for d in self.dst:
            self.spans.append((a, a + d.size))
            a += d.size
        self.torch = torch.get_num_threads() > 1 and a >= LARGE
        self.dst_t = [torch.from_numpy(d) for d in self.dst]

    def from_flat(self, x: np.ndarray) -> None:
        """Copy the pieces of flat vector ``x`` into the destinations."""
        if self.torch:
            xt = torch.from_numpy(x)
            torch._foreach_copy_(self.dst_t, [xt[i:j] for i, j in self.spans])
        else:
            for d, (i, j) in zip(self.dst, self.spans):
                np.copyto(d, x[i:j])

    def write_keeping(self, x: np.ndarray, keep: np.ndarray, keep_t: list[torch.Tensor]) -> None:
        """Copy ``x`` into the destinations and then into ``keep`` (pieces ``keep_t``), as the bridge does."""
        if self.torch:
            self.from_flat(x)
            torch._foreach_copy_(keep_t, self.dst_t)
        elif self.spans[-1][1] >= LARGE:
            for d, (i, j) in zip(self.dst, self.spans):
                for s in range(0, j - i, PIECE):
                    e = min(s + PIECE, j - i)
                    np.copyto(d[s:e], x[i + s : i + e])
                    np.copyto(keep[i + s : i + e], d[s:e])
        else:
            np.copyto(keep, x)
            self.from_flat(keep)


def overhead(n_params: int, n_tensors: int, evals: int, repeat: int) -> dict[str, Any]:
    """Time per fun_and_grad call outside the closure (and outside any solver), with three baselines.

    - ``copy_hot``: a bare copy of each vector into one reused buffer, back to back, so the
      destination stays in cache (the cheapest copy there is).
    - ``copy_into_params``: a bare copy of each vector into the parameters right after the same
      closure ran, the cache state the bridge's own write meets.
    - ``floor``: after the same closure, only the copies the contract requires, by hand: ``x``
      into the parameters, the memo's copy of ``x`` (taken from the parameters, as the bridge
      does), and for several tensors the gradients gathered into one new vector. A single large
      float64 tensor needs no gather, its gradient is handed over.
    """
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
        obj.release()

    spans = list(zip(flat.offsets, flat.offsets[1:]))
    bare = _Copier([np.empty(n_params)])
    params_copier = _Copier([p.data.numpy() for p in params])
    keeps = [np.empty(n_params) for _ in range(4)]  # the memo's pool: two remembered points, best, free
    keeps_t = [[torch.from_numpy(k)[a:b] for a, b in spans] for k in keeps]

    def copy_hot() -> float:
        t = time.perf_counter()
        for x in xs:
            bare.from_flat(x)
        return time.perf_counter() - t

    def after_closure(work: Any) -> Any:
        def run() -> float:
            spent = 0.0
            for i, x in enumerate(xs):
                closure()
                t = time.perf_counter()
                work(i, x)
                spent += time.perf_counter() - t
            return spent

        return run

    def into_params(i: int, x: np.ndarray) -> None:
        params_copier.from_flat(x)

    def floor_work(i: int, x: np.ndarray) -> None:
        params_copier.write_keeping(x, keeps[i % 4], keeps_t[i % 4])
        if n_tensors > 1:  # the gradients into one new vector (one large float64 tensor hands its over)
            out = torch.from_numpy(np.empty(n_params))
            torch._foreach_copy_([out[a:b] for a, b in spans], [p.grad for p in params])  # type: ignore[misc]
        elif n_params < LARGE:
            np.copyto(np.empty(n_params), params[0].grad.numpy())  # type: ignore[union-attr]

    def median_of(run: Any) -> float:
        return statistics.median(run() for _ in range(repeat)) / evals

    ours = statistics.median(per_eval)
    hot = median_of(copy_hot)
    cold = median_of(after_closure(into_params))
    floor = median_of(after_closure(floor_work))
    return {
        "n_params": n_params,
        "n_tensors": n_tensors,
        "threads": torch.get_num_threads(),
        "overhead_us": ours * 1e6,
        "copy_hot_us": hot * 1e6,
        "copy_into_params_us": cold * 1e6,
        "floor_us": floor * 1e6,
        "over_copy_hot": ours / hot,
        "over_copy_into_params": ours / cold,
        "over_floor": ours / floor,
    }


# ---------------------------------------------------------------------- many small tensors
# (entries, tensors, evaluations per repetition)
MANY = [(1, 1, 2000), (10, 10, 2000), (100, 100, 500), (1000, 1000, 100), (100_000, 1000, 50)]


def many_tensors(repeat: int) -> list[dict[str, Any]]:
    """Overhead rows for 1 to 1000 tensors (one entry each, and 100 each at 1000), measured in one run.

    ``extra_per_tensor_us`` is the growth over the one-tensor row of the same run, per added tensor.
    """
    rows = []
    for threads in (1, DEFAULT_THREADS):
        with _threads(threads):
            block = [overhead(n, k, evals, repeat) for n, k, evals in MANY]
        one = block[0]["overhead_us"]
        for r in block:
            r["extra_per_tensor_us"] = (r["overhead_us"] - one) / (r["n_tensors"] - 1) if r["n_tensors"] > 1 else 0.0
        rows += block
    print("\n## Many small tensors: bridge overhead per evaluation\n")
    print(_table(rows, ["threads", "n_params", "n_tensors", "overhead_us", "extra_per_tensor_us", "floor_us"]))
    return rows


# ---------------------------------------------------------------------- Newton methods
def _logreg_data(n_samples: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) / np.sqrt(n_features)
    w = rng.normal(size=n_features)
    y = (X @ w + 0.5 * rng.normal(size=n_samples) > 0).astype(np.float64)
    return X, y


def newton(method: str, n_features: int, n_samples: int, lam: float, repeat: int, dense: bool = True) -> dict[str, Any]:
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

    out: dict[str, Any] = {"method": method, "n_params": n_features, "threads": torch.get_num_threads()}

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
    t_dense = _median_time(run_dense, 1) if dense else float("nan")
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
    out.pop("dense_result", None)
    del out["autograd"], out["central"]
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
    with _threads(1):
        t_one = _median_time(fit, repeat)
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
    parser.add_argument("--many-only", action="store_true", help="only the many-tensor rows, printed, not saved")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
    }
    results["many_tensors"] = many_tensors(repeat)
    if args.many_only:
        return

    default_threads = DEFAULT_THREADS
    if os.environ.get("OMP_NUM_THREADS"):
        print(
            f"note: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} sets torch's default; unset it for the default rows"
        )
    sizes = [(2, 1), (1000, 1), (1000, 10), (1000, 100), (50_000, 10), (1_000_000, 1), (1_000_000, 10)]
    rows = []
    for threads in (1, default_threads):
        with _threads(threads):
            rows += [overhead(n, k, 2000 if n <= 50_000 else 20, repeat) for n, k in sizes]
    results["overhead"] = rows
    print("\n## Bridge overhead per evaluation (fun_and_grad outside the closure)\n")
    print(
        "copy_hot: a bare copy into one reused buffer; copy_into_params: a bare copy into the parameters "
        "right after the closure; floor: after the closure, only the copies the contract requires "
        "(write, memo copy, gradient gather for several tensors), by hand.\n"
    )
    print(
        _table(
            rows,
            [
                "threads",
                "n_params",
                "n_tensors",
                "overhead_us",
                "copy_hot_us",
                "copy_into_params_us",
                "floor_us",
                "over_copy_hot",
                "over_copy_into_params",
                "over_floor",
            ],
        )
    )

    newton_rows = []
    for threads in (1, default_threads):
        with _threads(threads):
            newton_rows += [
                newton(m, 1000, 10_000, 1e-3, repeat, dense=threads == 1) for m in ("Newton-CG", "trust-krylov")
            ]
    results["newton"] = newton_rows
    print("\n## Exact Hessian-vector products: L2 logistic regression, 1000 parameters, 10000 samples\n")
    print(
        "numpy reference: hessp recomputes X @ w per product; cached reference: it keeps the curvature weights "
        "while w is unchanged, as the autograd graph does. matvec pair: X @ v and X.T @ u, torch over numpy. "
        "The dense-Hessian comparison runs with one thread only (it takes tens of seconds).\n"
    )
    print(
        _table(
            newton_rows,
            [
                "threads",
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

    with _threads(default_threads):
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
