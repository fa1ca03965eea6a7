"""torchzero_bridge against other scipy.optimize.minimize bridges, measured side by side in one run.

Peers (install with ``pip install -c constraints.txt -e ".[bench]"``):

* pytorch-minimize 0.1.0 (``torchmin.ScipyMinimizer``): a plain closure; every scipy call runs
  the closure with a backward pass and hands scipy ``(loss, grad)`` with ``jac=True``; it passes
  no ``hess``/``hessp``, so Newton-CG falls back to scipy's finite differences of gradients and
  the trust-region methods refuse to start.
* torchzero 0.4.4 (``torchzero.optim.wrappers.scipy.ScipyMinimize``): a ``closure(backward=True)``
  closure; autograd gradients; for Newton-CG, trust-ncg and trust-krylov an autograd
  Hessian-vector product that re-runs the closure and a double backward for every product
  (no memo); a dense autograd Hessian for dogleg and trust-exact.

Sections (each run with one thread, then with the default thread settings; ``--quick`` runs
section 3 with one thread only):

1. Per-evaluation overhead. L-BFGS-B with a fixed ``maxiter`` (``ftol = gtol = 0`` so every
   bridge takes the same iterations) on the separable quadratic
   ``f(x) = 0.5 * sum(c * (x - t)**2)``. For each bridge::

       outside = (wall time of step() - time inside the closure) / closure runs
       overhead = outside - reference_outside
       reference_outside = (wall time of scipy.optimize.minimize - time inside the numpy
                            objective) / objective calls     (about scipy's own cost per call)

   Time inside the closure (or the numpy objective) is summed with ``time.perf_counter`` calls
   at its first and last line, so the model's forward and backward are excluded and what
   remains is the bridge's own work (copies between numpy and torch, dtype conversion, memo,
   bookkeeping, per-solve setup amortised over the solve's evaluations). The variants solve
   in turn, round after round, and each number is the minimum over rounds (load on the machine
   only ever adds time); ratios divide a peer's overhead by ours. The table's noise column (the
   reference's median minus its minimum) says how small an overhead the run can resolve.
2. Newton-CG and trust-krylov on L2-regularised logistic regression (1,000 parameters,
   synthetic data from numpy with a fixed seed): wall time, iterations, closure runs,
   Hessian-vector products and the final loss (evaluated in numpy at the returned
   parameters), against scipy on a hand-written numpy objective with an analytic ``hessp``.
3. A float32 matrix: every ``scipy.optimize.minimize`` method with each bridge on a float32
   4-3-1 tanh MLP (scikit-learn's breast-cancer data, 4 standardised features, logistic loss
   plus a small L2 term). Whether it ran (or the exception), the final loss (evaluated in
   float64 at the returned parameters) and its relative gap to our float64 run of the same
   method from the same start. Per-method iteration caps are applied identically to every
   bridge.

Run:
    python benchmarks/bench_peers.py            # full run (under 10 minutes on 2 quiet cores)
    python benchmarks/bench_peers.py --quick    # fewer iterations and repetitions (under 3 minutes)

Writes ``benchmarks/results/peers.json`` and ``benchmarks/results/peers.md``. "Default threads"
means torch's and BLAS's thread counts as found at start-up (so ``OMP_NUM_THREADS`` and
friends, if set, apply); leave them unset to compare with one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torchzero_bridge as tzb

RESULTS = Path(__file__).resolve().parent / "results"
BRIDGES = ("tzb", "torchmin", "torchzero")
INSTALL_HINT = 'install the peers with: pip install -c constraints.txt -e ".[bench]"'

MINIMIZE_METHODS = (
    "Nelder-Mead",
    "Powell",
    "CG",
    "BFGS",
    "Newton-CG",
    "L-BFGS-B",
    "TNC",
    "COBYLA",
    "COBYQA",
    "SLSQP",
    "trust-constr",
    "dogleg",
    "trust-ncg",
    "trust-exact",
    "trust-krylov",
)

# Caps that keep the float32 matrix bounded in time; the same options go to every bridge.
FLOAT32_CAPS: dict[str, dict[str, Any]] = {
    "Nelder-Mead": {"maxiter": 1000},
    "Powell": {"maxiter": 10},
    "CG": {"maxiter": 500},
    "BFGS": {"maxiter": 500},
    "Newton-CG": {"maxiter": 200},
    "L-BFGS-B": {"maxiter": 500},
    "TNC": {"maxfun": 1000},
    "COBYLA": {"maxiter": 500},
    "COBYQA": {"maxiter": 200},
    "SLSQP": {"maxiter": 500},
    "trust-constr": {"maxiter": 300},
    "dogleg": {"maxiter": 200},
    "trust-ncg": {"maxiter": 200},
    "trust-exact": {"maxiter": 200},
    "trust-krylov": {"maxiter": 200},
}


# ====================================================================== peers and threads
def peer_classes() -> dict[str, type]:
    """The peers' optimizer classes, imported lazily.

    Returns:
        ``{"torchmin": ScipyMinimizer, "torchzero": ScipyMinimize}``.

    Raises:
        ImportError: a peer is not installed (the message says how to install it).

    Example:
        >>> sorted(peer_classes())  # doctest: +SKIP
        ['torchmin', 'torchzero']
    """
    try:
        from torchmin import ScipyMinimizer
        from torchzero.optim.wrappers.scipy import ScipyMinimize
    except ImportError as exc:
        raise ImportError(f"{exc}; {INSTALL_HINT}") from exc
    return {"torchmin": ScipyMinimizer, "torchzero": ScipyMinimize}


class IterationCounter:
    """A scipy ``callback`` that only counts iterations (torchzero exposes no result object).

    Example:
        >>> c = IterationCounter()
        >>> c(np.zeros(2)); c(np.zeros(2)); c.n
        2
    """

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.n += 1


def make_optimizer(
    bridge: str,
    params: Sequence[torch.Tensor],
    method: str,
    options: dict[str, Any] | None = None,
    *,
    threads: Any = "auto",
) -> tuple[torch.optim.Optimizer, IterationCounter | None]:
    """Build ``bridge``'s optimizer for one ``minimize`` method with its default derivatives.

    Args:
        bridge: ``"tzb"``, ``"torchmin"`` or ``"torchzero"``.
        params: the tensors to fit.
        method: a ``scipy.optimize.minimize`` method name.
        options: scipy's ``options`` (copied, never shared between bridges).
        threads: ``threads`` for our wrapper (ignored by the peers, which have no such option).

    Returns:
        The optimizer and, for torchzero, the callback counting its iterations.

    Raises:
        ValueError: unknown ``bridge``.

    Example:
        >>> w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        >>> opt, _ = make_optimizer("tzb", [w], "L-BFGS-B")
    """
    opts = dict(options) if options else None
    if bridge == "tzb":
        return tzb.MinimizeWrapper(params, method=method, options=opts, threads=threads), None
    if bridge == "torchmin":
        return peer_classes()["torchmin"](params, method=method.lower(), options=opts), None
    if bridge == "torchzero":
        counter = IterationCounter()
        return peer_classes()["torchzero"](params, method=method.lower(), options=opts, callback=counter), counter
    raise ValueError(f"bridge: expected one of {BRIDGES}, got {bridge!r}")


def result_of(bridge: str, opt: torch.optim.Optimizer, counter: IterationCounter | None) -> dict[str, Any]:
    """What a bridge reports after ``step``: iterations and (where exposed) scipy's counters.

    Ours keeps ``opt.result``; torchmin keeps scipy's result in the private ``_result``;
    torchzero keeps nothing, so its iterations come from a counting callback.

    Example:
        >>> w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        >>> opt, c = make_optimizer("tzb", [w], "BFGS")
        >>> result_of("tzb", opt, c)["nit"] is None
        True
    """
    res = getattr(opt, "result", None) if bridge == "tzb" else getattr(opt, "_result", None)
    if bridge == "torchzero":
        return {"nit": counter.n if counter else None, "nhev": None, "success": None, "message": None}
    if res is None:
        return {"nit": None, "nhev": None, "success": None, "message": None}
    return {
        "nit": res.get("nit"),
        "nhev": res.get("nhev"),
        "success": bool(res.get("success")),
        "message": str(res.get("message")),
    }


@contextlib.contextmanager
def thread_mode(mode: str, default_torch_threads: int) -> Iterator[None]:
    """Run a block with one thread (torch and every BLAS/OpenMP pool) or with the defaults.

    Args:
        mode: ``"1 thread"`` or ``"default"``.
        default_torch_threads: torch's thread count at start-up, restored for ``"default"``.

    Example:
        >>> with thread_mode("1 thread", torch.get_num_threads()):
        ...     torch.get_num_threads()
        1
    """
    old = torch.get_num_threads()
    try:
        if mode == "1 thread":
            torch.set_num_threads(1)
            with threadpool_limits(limits=1):
                yield
        elif mode == "default":
            torch.set_num_threads(default_torch_threads)
            yield
        else:
            raise ValueError(f"mode: expected '1 thread' or 'default', got {mode!r}")
    finally:
        torch.set_num_threads(old)


class Timer:
    """Sums the time spent inside a closure (its first and last lines call :meth:`start`/:meth:`stop`).

    Example:
        >>> t = Timer(); t.start(); t.stop(); t.calls
        1
    """

    def __init__(self) -> None:
        self.inside = 0.0
        self.calls = 0
        self.no_backward = 0
        self._t0 = 0.0

    def start(self) -> None:
        """Mark the closure's entry."""
        self._t0 = time.perf_counter()

    def stop(self, backward: bool = True) -> None:
        """Mark the closure's exit; ``backward=False`` counts a value-only run."""
        self.inside += time.perf_counter() - self._t0
        self.calls += 1
        if not backward:
            self.no_backward += 1


# ====================================================================== 1. overhead
def _quadratic(n_params: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = np.logspace(0.0, 3.0, n_params)[rng.permutation(n_params)]
    t = rng.normal(size=n_params)
    return c, t


def _split(x: np.ndarray, n_tensors: int) -> list[np.ndarray]:
    sizes = [len(x) // n_tensors] * n_tensors
    sizes[0] += len(x) - sum(sizes)
    return np.split(x, np.cumsum(sizes)[:-1])


def _lbfgsb_options(maxiter: int) -> dict[str, Any]:
    return {"maxiter": maxiter, "maxfun": 10**9, "ftol": 0.0, "gtol": 0.0}


class _Solve:
    """One L-BFGS-B solve of the quadratic by one variant; call it to time a solve."""

    def __init__(self, variant: str, n_params: int, n_tensors: int, maxiter: int) -> None:
        self.variant = variant
        self.maxiter = maxiter
        self.timer = Timer()
        c, t = _quadratic(n_params)
        self.n_params = n_params
        if variant == "numpy+scipy":
            self.c, self.t = c, t
            return
        self.bridge, self.threads = ("tzb", None) if variant == "tzb threads=None" else (variant, "auto")
        self.cs = [torch.from_numpy(a.copy()) for a in _split(c, n_tensors)]
        self.ts = [torch.from_numpy(a.copy()) for a in _split(t, n_tensors)]
        self.params = [torch.zeros(len(a), dtype=torch.float64, requires_grad=True) for a in self.cs]

    def _numpy_fun(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.timer.start()
        d = x - self.t
        g = self.c * d
        f = 0.5 * float(d @ g)
        self.timer.stop()
        return f, g

    def _closure(self, backward: bool = True) -> torch.Tensor:
        timer = self.timer
        timer.start()
        for p in self.params:
            p.grad = None
        loss = sum(0.5 * (ci * (p - ti) ** 2).sum() for p, ci, ti in zip(self.params, self.cs, self.ts))
        if backward:
            loss.backward()
        timer.stop(backward)
        return loss

    def __call__(self) -> tuple[float, int]:
        """Run one solve from zero; return (seconds per call outside the objective, calls)."""
        self.timer.inside, self.timer.calls = 0.0, 0
        options = _lbfgsb_options(self.maxiter)
        if self.variant == "numpy+scipy":
            t0 = time.perf_counter()
            minimize(self._numpy_fun, np.zeros(self.n_params), jac=True, method="L-BFGS-B", options=options)
        else:
            with torch.no_grad():
                for p in self.params:
                    p.zero_()
            opt, _ = make_optimizer(self.bridge, self.params, "L-BFGS-B", options, threads=self.threads)
            t0 = time.perf_counter()
            opt.step(self._closure)
        wall = time.perf_counter() - t0
        return (wall - self.timer.inside) / self.timer.calls, self.timer.calls


OVERHEAD_VARIANTS = ("numpy+scipy", "tzb", "tzb threads=None", "torchmin", "torchzero")
_KEYS = {"numpy+scipy": "reference", "tzb": "tzb", "tzb threads=None": "tzb_nothreads"}


def overhead_case(n_params: int, n_tensors: int, maxiter: int, min_rounds: int, min_seconds: float) -> dict[str, Any]:
    """One row of section 1: every variant solves the same quadratic, interleaved round by round.

    Each round runs one solve per variant (so load changes hit every variant alike); rounds
    repeat until ``min_rounds`` are done and ``min_seconds`` have passed. A variant's time per
    call outside its objective is the minimum over rounds (noise only ever adds time).

    Args:
        n_params: parameters in total.
        n_tensors: how many tensors they are split into.
        maxiter: L-BFGS-B iterations (``ftol = gtol = 0``, so every variant takes the same path).
        min_rounds: at least this many solves per variant.
        min_seconds: keep adding rounds until this much time was spent.

    Returns:
        ``reference_outside_us``; for each bridge ``<key>_outside_us``, ``<key>_us`` (minus
        the reference), ``<key>_nfev`` and ``<key>_over_tzb``, or ``<key>_error``.

    Example:
        >>> row = overhead_case(10, 2, 3, 1, 0.0)
        >>> row["tzb_nfev"] == row["reference_nfev"]
        True
    """
    solves: dict[str, _Solve] = {}
    row: dict[str, Any] = {"n_params": n_params, "n_tensors": n_tensors, "maxiter": maxiter}
    for variant in OVERHEAD_VARIANTS:
        key = _KEYS.get(variant, variant)
        try:
            solve = _Solve(variant, n_params, n_tensors, maxiter)
            solve()  # warm-up (and a check that the bridge runs at all)
            solves[variant] = solve
        except Exception as exc:
            row[f"{key}_us"] = None
            row[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
    samples: dict[str, list[float]] = {v: [] for v in solves}
    nfev: dict[str, int] = {}
    spent = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - spent < min_seconds:
        for variant, solve in solves.items():
            per_call, nfev[variant] = solve()
            samples[variant].append(per_call)
        rounds += 1
    row["rounds"] = rounds
    ref = min(samples["numpy+scipy"])
    row["reference_outside_us"] = ref * 1e6
    row["noise_us"] = (statistics.median(samples["numpy+scipy"]) - ref) * 1e6
    row["reference_nfev"] = nfev["numpy+scipy"]
    for variant in OVERHEAD_VARIANTS[1:]:
        if variant not in solves:
            continue
        key = _KEYS.get(variant, variant)
        row[f"{key}_outside_us"] = min(samples[variant]) * 1e6
        row[f"{key}_us"] = (min(samples[variant]) - ref) * 1e6
        row[f"{key}_nfev"] = nfev[variant]
    ours = row.get("tzb_us")
    for key in ("tzb_nothreads", "torchmin", "torchzero"):
        peer = row.get(f"{key}_us")
        row[f"{key}_over_tzb"] = peer / ours if ours is not None and peer is not None and ours > 0 else None
    return row


def overhead_section(
    cases: Sequence[tuple[int, int, int]], min_rounds: int, min_seconds: float
) -> list[dict[str, Any]]:
    """Rows of section 1: one per ``(n_params, n_tensors, maxiter)`` case (see :func:`overhead_case`).

    Example:
        >>> rows = overhead_section([(10, 1, 3)], 1, 0.0)
        >>> rows[0]["tzb_us"] is not None
        True
    """
    return [overhead_case(n, k, maxiter, min_rounds, min_seconds) for n, k, maxiter in cases]


# ====================================================================== 2. Newton methods
def logreg_data(n_samples: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic binary classification data (numpy, fixed seed).

    Example:
        >>> X, y = logreg_data(20, 3)
        >>> X.shape, sorted(set(y.tolist())) == [0.0, 1.0]
        ((20, 3), True)
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) / np.sqrt(n_features)
    w = rng.normal(size=n_features)
    y = (X @ w + 0.5 * rng.normal(size=n_samples) > 0).astype(np.float64)
    return X, y


def _logreg_numpy(X: np.ndarray, y: np.ndarray, lam: float) -> tuple[Callable, Callable, Callable]:
    m = len(y)

    def f(w: np.ndarray) -> float:
        z = X @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * lam * (w @ w))

    def g(w: np.ndarray) -> np.ndarray:
        s = 0.5 * (1.0 + np.tanh(0.5 * (X @ w)))  # sigmoid without overflow
        return X.T @ (s - y) / m + lam * w

    def hp(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        s = 0.5 * (1.0 + np.tanh(0.5 * (X @ w)))
        return X.T @ (s * (1.0 - s) * (X @ v)) / m + lam * v

    return f, g, hp


@contextlib.contextmanager
def count_fd_hessp() -> Iterator[list[int]]:
    """Count scipy's finite-difference Hessian-vector products in Newton-CG (``approx_fhess_p``).

    scipy's ``result.nhev`` leaves them out, and each costs one gradient evaluation; patched
    for the duration of the block only. Yields a one-element list holding the count.
    """
    import scipy.optimize._optimize as sopt

    count = [0]
    original = getattr(sopt, "approx_fhess_p", None)
    if original is None:
        yield count
        return

    def counting(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    sopt.approx_fhess_p = counting
    try:
        yield count
    finally:
        sopt.approx_fhess_p = original


HESSIAN_HANDLING = {
    "numpy+scipy": "analytic hessp",
    "tzb": "exact autograd hessp (one graph per point, one backward per product)",
    "torchmin": "none passed: scipy's finite differences of gradients (Newton-CG); trust-krylov needs one",
    "torchzero": "autograd hessp: closure re-run plus double backward per product",
}


def newton_case(bridge: str, method: str, n_features: int, n_samples: int, lam: float, repeat: int) -> dict[str, Any]:
    """One bridge (or ``"numpy+scipy"``) on L2 logistic regression with a Newton-type method.

    Returns:
        wall time (median), ``nit``, closure runs, Hessian-vector products, final loss (numpy,
        at the returned parameters), max |x - x_reference|, or ``error``.

    Example:
        >>> r = newton_case("tzb", "Newton-CG", 5, 40, 1e-2, 1)
        >>> r["nit"] > 0
        True
    """
    X, y = logreg_data(n_samples, n_features)
    f, g, hp = _logreg_numpy(X, y, lam)
    row: dict[str, Any] = {"method": method, "bridge": bridge, "hessian": HESSIAN_HANDLING[bridge]}
    if bridge == "numpy+scipy":
        calls = [0, 0]

        def fg(w: np.ndarray) -> tuple[float, np.ndarray]:
            calls[0] += 1
            return f(w), g(w)

        def hpc(w: np.ndarray, v: np.ndarray) -> np.ndarray:
            calls[1] += 1
            return hp(w, v)

        times = []
        for _ in range(repeat + 1):  # the first solve warms up and is not timed
            calls[:] = [0, 0]
            t0 = time.perf_counter()
            res = minimize(fg, np.zeros(n_features), jac=True, hessp=hpc, method=method)
            times.append(time.perf_counter() - t0)
        del times[0]
        row.update(
            wall_s=statistics.median(times),
            nit=int(res.nit),
            closure_runs=calls[0],
            hessian_products=calls[1],
            loss=f(res.x),
            x=res.x,
        )
        return row

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    w = torch.zeros(n_features, dtype=torch.float64, requires_grad=True)
    timer = Timer()

    def closure(backward: bool = True) -> torch.Tensor:
        timer.start()
        w.grad = None
        z = Xt @ w
        loss = torch.nn.functional.softplus(z).sub(yt * z).mean() + 0.5 * lam * (w @ w)
        if backward:
            loss.backward()
        timer.stop(backward)
        return loss

    times = []
    try:
        for _ in range(repeat + 1):  # the first solve warms up and is not timed
            with torch.no_grad():
                w.zero_()
            opt, counter = make_optimizer(bridge, [w], method)
            timer.calls = timer.no_backward = 0
            with count_fd_hessp() as fd:
                t0 = time.perf_counter()
                opt.step(closure)
                times.append(time.perf_counter() - t0)
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    del times[0]
    info = result_of(bridge, opt, counter)
    if bridge == "tzb":
        products = info["nhev"]
    elif bridge == "torchzero":
        products = timer.no_backward  # its hessp is the only caller of closure(False) here
    else:
        products = fd[0]
    xw = w.detach().numpy().copy()
    row.update(
        wall_s=statistics.median(times),
        nit=info["nit"],
        closure_runs=timer.calls,
        hessian_products=products,
        loss=f(xw),
        x=xw,
    )
    return row


def newton_section(
    methods: Sequence[str], n_features: int, n_samples: int, lam: float, repeat: int
) -> list[dict[str, Any]]:
    """Rows of section 2: the numpy reference and every bridge, for each method.

    Example:
        >>> rows = newton_section(["Newton-CG"], 5, 40, 1e-2, 1)
        >>> [r["bridge"] for r in rows]
        ['numpy+scipy', 'tzb', 'torchmin', 'torchzero']
    """
    rows = []
    for method in methods:
        ref = newton_case("numpy+scipy", method, n_features, n_samples, lam, repeat)
        rows.append(ref)
        for bridge in BRIDGES:
            rows.append(newton_case(bridge, method, n_features, n_samples, lam, repeat))
        for r in rows[-4:]:
            if "x" in r:
                r["max_abs_dx"] = float(np.max(np.abs(r["x"] - ref["x"])))
                r["wall_over_reference"] = r["wall_s"] / ref["wall_s"]
    for r in rows:
        r.pop("x", None)
    return rows


# ====================================================================== 3. float32 matrix
@functools.cache
def mlp_data() -> tuple[np.ndarray, np.ndarray]:
    """Breast-cancer data: the first 4 features standardised, labels 0/1 (float64 numpy).

    Example:
        >>> X, y = mlp_data()
        >>> X.shape
        (569, 4)
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    X = data.data[:, :4]
    X = (X - X.mean(0)) / X.std(0)
    return X, data.target.astype(np.float64)


MLP_L2 = 1e-3


def _mlp(dtype: torch.dtype) -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    return model.to(dtype)  # same float32-rounded start for every dtype


def _mlp_loss(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = model(X).squeeze(-1)
    l2 = sum((p**2).sum() for name, p in model.named_parameters() if name.endswith("weight"))
    return torch.nn.functional.binary_cross_entropy_with_logits(out, y) + MLP_L2 * l2


def _loss64(params: Sequence[torch.Tensor]) -> float:
    """The MLP's loss in float64 at ``params`` (any dtype): the matrix's independent yardstick."""
    Xn, yn = mlp_data()
    check = _mlp(torch.float64)
    with torch.no_grad():
        for q, p in zip(check.parameters(), params):
            q.copy_(p.detach().to(torch.float64))
        return float(_mlp_loss(check, torch.from_numpy(Xn), torch.from_numpy(yn)))


def float32_case(bridge: str, method: str, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """One cell of the float32 matrix: ``bridge`` with ``method`` on the MLP in ``dtype``.

    Returns:
        ``ran``, ``loss`` (float64 at the returned parameters), ``moved`` (the loss differs
        from the start), ``wall_s`` (``step`` only), ``closure_runs``, or ``error`` (the
        exception's type and first line) and ``where`` (the file that raised it).

    Example:
        >>> float32_case("tzb", "L-BFGS-B")["ran"]
        True
    """
    Xn, yn = mlp_data()
    model = _mlp(dtype)
    X, y = torch.from_numpy(Xn).to(dtype), torch.from_numpy(yn).to(dtype)
    params = list(model.parameters())
    start = _loss64(params)
    timer = Timer()

    def closure(backward: bool = True) -> torch.Tensor:
        timer.start()
        for p in params:
            p.grad = None
        loss = _mlp_loss(model, X, y)
        if backward:
            loss.backward()
        timer.stop(backward)
        return loss

    row: dict[str, Any] = {"method": method, "bridge": bridge, "dtype": str(dtype).replace("torch.", "")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt, counter = make_optimizer(bridge, params, method, FLOAT32_CAPS.get(method))
        t0 = time.perf_counter()
        try:
            opt.step(closure)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            row.update(ran=False, error=f"{type(exc).__name__}: {msg[:160]}", wall_s=time.perf_counter() - t0)
            row["where"] = traceback.extract_tb(exc.__traceback__)[-1].filename.split("site-packages/")[-1]
            return row
    wall = time.perf_counter() - t0
    loss = _loss64(params)
    moved = not math.isclose(loss, start, rel_tol=1e-12)
    info = result_of(bridge, opt, counter)
    row.update(ran=math.isfinite(loss), loss=loss, moved=moved, wall_s=wall, closure_runs=timer.calls)
    row.update(success=info["success"], message=info["message"], nit=info["nit"])
    return row


def float32_section(methods: Sequence[str] = MINIMIZE_METHODS) -> list[dict[str, Any]]:
    """Rows of section 3: per method, our float64 run, then each bridge on the float32 model.

    Example:
        >>> rows = float32_section(["BFGS"])
        >>> [r["bridge"] for r in rows]
        ['tzb', 'tzb', 'torchmin', 'torchzero']
    """
    rows = []
    for method in methods:
        base = float32_case("tzb", method, torch.float64)
        rows.append(base)
        for bridge in BRIDGES:
            r = float32_case(bridge, method, torch.float32)
            if r["ran"] and base.get("ran"):
                r["rel_gap"] = (r["loss"] - base["loss"]) / abs(base["loss"])
            rows.append(r)
    return rows


# ====================================================================== reporting
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{digits}g}"
    return str(v)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table.

    Example:
        >>> print(md_table(["a", "b"], [[1, 2.0]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


OVERHEAD_CAPTION = (
    "Overhead per closure run, µs = (step wall time − time inside the closure) / closure runs "
    "− (scipy.minimize wall time − time inside the numpy objective) / objective calls; "
    "L-BFGS-B, fixed maxiter, ftol = gtol = 0, separable quadratic; minimum over solves interleaved round by round. "
    "Per-solve setup is included, spread over the solve's closure runs. "
    "`tzb` uses its defaults (threads='auto': BLAS capped at one thread per solve via threadpoolctl); "
    "`tzb threads=None` skips that. ×tzb = peer overhead / ours. Noise: the reference's median minus "
    "its minimum over rounds; overheads within it of zero (or negative) are below what this run resolves."
)


def overhead_markdown(rows: Sequence[dict[str, Any]], mode: str) -> str:
    """Section 1 as Markdown."""
    header = [
        "params",
        "tensors",
        "closure runs",
        "scipy µs/call",
        "noise µs",
        "tzb µs",
        "tzb threads=None µs",
        "torchmin µs",
        "torchzero µs",
        "torchmin ×tzb",
        "torchzero ×tzb",
    ]
    body = [
        [
            r["n_params"],
            r["n_tensors"],
            r.get("tzb_nfev"),
            r["reference_outside_us"],
            r.get("noise_us"),
            r.get("tzb_us"),
            r.get("tzb_nothreads_us"),
            r.get("torchmin_us"),
            r.get("torchzero_us"),
            r.get("torchmin_over_tzb"),
            r.get("torchzero_over_tzb"),
        ]
        for r in rows
    ]
    errors = [
        f"- {r['n_params']} params / {r['n_tensors']} tensors, {k.removesuffix('_error')}: {v}"
        for r in rows
        for k, v in r.items()
        if k.endswith("_error")
    ]
    out = f"### 1. Per-evaluation overhead ({mode})\n\n{OVERHEAD_CAPTION}\n\n{md_table(header, body)}"
    return out + ("\n\n" + "\n".join(errors) if errors else "")


def newton_markdown(rows: Sequence[dict[str, Any]], mode: str, n_features: int, n_samples: int) -> str:
    """Section 2 as Markdown."""
    header = [
        "method",
        "bridge",
        "wall s",
        "×numpy",
        "nit",
        "closure runs",
        "Hessian products",
        "final loss",
        "max abs(x − x_numpy)",
    ]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["method"], r["bridge"], f"error: {r['error']}", None, None, None, None, None, None])
        else:
            body.append(
                [
                    r["method"],
                    r["bridge"],
                    r["wall_s"],
                    r.get("wall_over_reference"),
                    r["nit"],
                    r["closure_runs"],
                    r["hessian_products"],
                    f"{r['loss']:.10g}",
                    r.get("max_abs_dx"),
                ]
            )
    handling = "\n".join(f"- {k}: {v}" for k, v in HESSIAN_HANDLING.items())
    caption = (
        f"L2-regularised logistic regression, {n_features} parameters, {n_samples} synthetic samples "
        "(numpy, seed 0), default tolerances. Closure runs: calls of the closure (numpy: of the "
        "objective); torchzero's nit comes from a counting callback, torchmin's finite-difference "
        "products from counting scipy's `approx_fhess_p` (each is one gradient run). Final loss "
        "evaluated in numpy at the returned parameters.\n\nHessian handling:\n" + handling
    )
    return f"### 2. Newton-CG and trust-krylov ({mode})\n\n{caption}\n\n{md_table(header, body)}"


def float32_markdown(rows: Sequence[dict[str, Any]], mode: str) -> str:
    """Section 3 as Markdown: one row per method, one column per bridge."""
    by_method: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        key = r["bridge"] if r["dtype"] == "float32" else "tzb float64"
        by_method.setdefault(r["method"], {})[key] = r

    def cell(r: dict[str, Any]) -> str:
        if not r.get("ran"):
            return f"✗ {r.get('error', 'non-finite loss')}"
        text = f"{r['loss']:.6g}"
        if r.get("rel_gap") is not None:
            text += f" ({r['rel_gap']:+.1e})"
        if not r.get("moved"):
            text += " — never left the start" + (" (reported success)" if r.get("success") else "")
        return text

    header = ["method", "caps", "tzb float64", "tzb float32", "torchmin float32", "torchzero float32"]
    body = []
    for method, cells in by_method.items():
        caps = ", ".join(f"{k}={v}" for k, v in (FLOAT32_CAPS.get(method) or {}).items())
        body.append([method, caps, *(cell(cells[b]) for b in ("tzb float64", *BRIDGES) if b in cells)])
    ran = {b: sum(1 for c in by_method.values() if c.get(b, {}).get("ran")) for b in BRIDGES}
    summary = ", ".join(f"{b} {ran[b]}/{len(by_method)}" for b in BRIDGES)
    caption = (
        "4-3-1 tanh MLP (19 parameters in 4 tensors) on scikit-learn's breast-cancer data (first 4 "
        f"features standardised), logistic loss + {MLP_L2:g}·‖W‖²; every bridge starts from the same "
        "float32 weights with the same options. Cells: final loss evaluated in float64 at the returned "
        "parameters (relative gap to our float64 run of the same method), or ✗ with the exception. "
        f"Methods that ran: {summary}."
    )
    return f"### 3. float32 matrix ({mode})\n\n{caption}\n\n{md_table(header, body)}"


def _compare_matrices(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> dict[str, bool]:
    same = {}
    for ra, rb in zip(a, b):
        key = f"{ra['method']}/{ra['bridge']}/{ra['dtype']}"
        if ra.get("ran") != rb.get("ran"):
            same[key] = False
        elif ra.get("ran"):
            same[key] = math.isclose(ra["loss"], rb["loss"], rel_tol=1e-6, abs_tol=1e-12)
        else:
            same[key] = ra.get("error") == rb.get("error")
    return same


# ====================================================================== main
def machine_info(default_torch_threads: int) -> dict[str, Any]:
    """Versions and thread settings recorded with the results.

    Example:
        >>> machine_info(1)["default_torch_threads"]
        1
    """
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **{name: ver(name) for name in ("torch", "numpy", "scipy", "torchzero", "pytorch-minimize")},
        "default_torch_threads": default_torch_threads,
        "blas_threads": [i.get("num_threads") for i in threadpool_info() if i.get("user_api") == "blas"],
        "env": {
            k: v for k, v in os.environ.items() if k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        },
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every section in both thread modes, print Markdown, write JSON and Markdown files.

    Args:
        argv: command-line arguments (``--quick``, ``--out``).

    Returns:
        The results written to ``peers.json``.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations and repetitions (under 3 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for peers.json and peers.md")
    args = parser.parse_args(argv)
    peer_classes()  # fail early with the install hint

    default_threads = torch.get_num_threads()
    if args.quick:
        cases = [(2, 1, 100), (1000, 1, 50), (1000, 100, 50), (50_000, 1, 20), (1_000_000, 1, 5)]
        min_rounds, min_seconds, newton_repeat = 3, 0.3, 3
    else:
        cases = [(2, 1, 100), (1000, 1, 200), (1000, 100, 200), (50_000, 1, 50), (1_000_000, 1, 10)]
        min_rounds, min_seconds, newton_repeat = 7, 2.0, 7
    n_features, n_samples, lam = 1000, 2000, 1e-3

    results: dict[str, Any] = {
        "command": "python benchmarks/bench_peers.py" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": machine_info(default_threads),
        "float32_caps": FLOAT32_CAPS,
    }
    md = [
        "## Benchmarks against other bridges",
        "",
        f"`{results['command']}` — torch {torch.__version__}, scipy {scipy.__version__}, "
        f"{os.cpu_count()} CPUs, default torch threads {default_threads}.",
    ]
    started = time.perf_counter()
    modes = ("1 thread", "default")
    sections: dict[str, dict[str, Any]] = {"overhead": {}, "newton": {}, "float32": {}}
    results["sections"] = sections

    def emit(part: str) -> None:
        print("\n" + part, flush=True)
        md.extend(["", part])

    seconds: dict[str, float] = {}
    results["seconds"] = seconds

    def timed(key: str, mode: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        with thread_mode(mode, default_threads):
            out = fn()
        seconds[f"{key} ({mode})"] = time.perf_counter() - t0
        return out

    for mode in modes:
        sections["overhead"][mode] = timed("overhead", mode, lambda: overhead_section(cases, min_rounds, min_seconds))
        emit(overhead_markdown(sections["overhead"][mode], mode))
    for mode in modes:
        sections["newton"][mode] = timed(
            "newton",
            mode,
            lambda: newton_section(("Newton-CG", "trust-krylov"), n_features, n_samples, lam, newton_repeat),
        )
        emit(newton_markdown(sections["newton"][mode], mode, n_features, n_samples))
    for mode in modes[:1] if args.quick else modes:
        sections["float32"][mode] = timed("float32", mode, float32_section)
    emit(float32_markdown(sections["float32"]["1 thread"], "1 thread"))
    if "default" in sections["float32"]:
        same = _compare_matrices(sections["float32"]["1 thread"], sections["float32"]["default"])
        results["float32_same_with_default_threads"] = same
        differ = [k for k, v in same.items() if not v]
        emit(
            "With default threads the float32 matrix gives the same outcome in every cell."
            if not differ
            else f"With default threads the float32 matrix differs in: {', '.join(differ)} (see peers.json)."
        )
    else:
        emit("(`--quick` runs the float32 matrix with one thread only; the full run repeats it with default threads.)")
    results["total_s"] = time.perf_counter() - started
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    md.extend(["", f"Total run time {results['total_s']:.0f} s ({spent})."])

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(results, indent=2, default=_json_default))
    (args.out / "peers.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {args.out / 'peers.json'} and {args.out / 'peers.md'} in {results['total_s']:.0f} s")
    return results


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


if __name__ == "__main__":
    main()
