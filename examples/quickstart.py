"""Quickstart: fit a float32 MLP on scikit-learn's breast-cancer data with every solver family.

Run:  python examples/quickstart.py

Every solver fits the same model (a 30-2-1 tanh MLP, 65 parameters, float32, same initial
weights) on the whole training set at once (full batch): scipy's L-BFGS-B, BFGS and the
Newton methods with exact Hessian-vector products, Powell without gradients, differential
evolution (whole generations evaluated in one vmap pass), nevergrad, optuna, and the native
zeroth-order RandomGrad. A line is printed as each solver finishes (final training loss, test
accuracy, closure evaluations, wall time); a plot of the best loss against closure evaluations
is saved next to this file (quickstart.png). About 15-25 s of CPU time on one core.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import torchzero_bridge as tzb

torch.set_num_threads(1)


def load() -> tuple[torch.Tensor, ...]:
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    mu, sd = Xtr.mean(0), Xtr.std(0)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return as_t((Xtr - mu) / sd), as_t(ytr)[:, None], as_t((Xte - mu) / sd), as_t(yte)[:, None]


def make_model(n_in: int, hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))


def loss_fn(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss plus a small L2 penalty (a pure function of the model's tensors)."""
    penalty = sum((p**2).sum() for p in model.parameters())
    return torch.nn.functional.binary_cross_entropy_with_logits(model(X), y) + 1e-3 * penalty


def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((model(X) > 0).float() == y).float().mean())


def bounded(params: Any, lim: float = 3.0) -> list[dict[str, Any]]:
    """One param group with box bounds (global and sampling solvers search inside it)."""
    return [{"params": list(params), "bounds": (-lim, lim)}]


HIDDEN = 2  # every solver fits the same 30-2-1 MLP (65 parameters)

# (label, optimizer factory, steps): one step is a whole solve for the external-solver
# wrappers and one update for native torch optimizers such as RandomGrad.
SOLVERS: list[tuple[str, Callable[[Any], Any], int]] = [
    ("L-BFGS-B", lambda p: tzb.MinimizeWrapper(p, {"method": "L-BFGS-B"}), 1),
    ("BFGS", lambda p: tzb.MinimizeWrapper(p, {"method": "BFGS"}), 1),
    ("Newton-CG (exact Hv)", lambda p: tzb.MinimizeWrapper(p, method="Newton-CG"), 1),
    ("trust-krylov (exact Hv)", lambda p: tzb.MinimizeWrapper(p, method="trust-krylov"), 1),
    ("Powell (no gradients)", lambda p: tzb.MinimizeWrapper(p, method="Powell", options={"maxfev": 3000}), 1),
    (
        "differential evolution",
        lambda p: tzb.DifferentialEvolutionWrapper(bounded(p), {"popsize": 4, "maxiter": 15, "rng": 0}),
        1,
    ),
    ("nevergrad NGOpt", lambda p: tzb.NevergradWrapper(bounded(p), "NGOpt", budget=400, seed=0), 1),
    ("optuna TPE", lambda p: tzb.OptunaWrapper(bounded(p), n_trials=60, seed=0), 1),
    (
        "RandomGrad + AdamW",
        lambda p: tzb.RandomGrad(p, lr=1e-2, opt=lambda q: torch.optim.AdamW(q, lr=1e-2), seed=0),
        800,
    ),
]


def fit(make_opt: Callable[[Any], Any], steps: int, data: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """Fit one model with one solver; return its figures and loss history."""
    Xtr, ytr, Xte, yte = data
    model = make_model(Xtr.shape[1], HIDDEN)
    opt = make_opt(model.parameters())
    history: list[float] = []

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(model, Xtr, ytr)
        if backward:
            loss.backward()
        history.append(float(loss.detach()))
        return loss

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's float32 precision notes
        warnings.filterwarnings("ignore", message="COBYLA: Invalid RHOEND")  # from inside NGOpt
        for _ in range(steps):
            opt.step(closure)
    loss = float(loss_fn(model, Xtr, ytr).detach())  # at the parameters the solver left
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "loss": loss,
        "accuracy": accuracy(model, Xte, yte),
        "evals": len(history),
        "seconds": time.perf_counter() - t,
        "curve": list(np.minimum.accumulate(history)),
    }


def main() -> None:
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass
    data = load()
    print(f"{'solver':26s} {'params':>6s} {'train loss':>10s} {'test acc':>8s} {'evals':>6s} {'time s':>7s}")
    results = {}
    for label, make_opt, steps in SOLVERS:
        r = results[label] = fit(make_opt, steps, data)
        figures = f"{r['params']:6d} {r['loss']:10.4f} {r['accuracy']:8.3f} {r['evals']:6d} {r['seconds']:7.2f}"
        print(f"{label:26s} {figures}", flush=True)  # one line as each solver finishes
    n_params = results[SOLVERS[0][0]]["params"]
    save_plot(
        {label: r["curve"] for label, r in results.items()},
        Path(__file__).with_name("quickstart.png"),
        f"Breast cancer, 30-{HIDDEN}-1 tanh MLP ({n_params} parameters, float32), full batch",
    )


def save_plot(curves: dict[str, list[float]], path: Path, title: str) -> None:
    """Best loss so far against closure evaluations, one line per solver (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(install matplotlib to get the plot)")
        return
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, ys in curves.items():
        ax.plot(np.arange(1, len(ys) + 1), ys, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("closure evaluations")
    ax.set_ylabel("best training loss so far")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    # outside the axes, on the right: the legend hides no curve
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
