"""Nevergrad and optuna on a small classifier, and an optuna study kept in SQLite.

Run:  python examples/nevergrad_optuna.py

The SQLite study can be resumed (run the script again: it adds trials to the same study) and
opened in optuna-dashboard (``pip install optuna-dashboard``, then
``optuna-dashboard sqlite:///examples/optuna_study.db``). Several processes, or machines with a
PostgreSQL URL instead, can run this at the same time: each adds its trials to one study.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
import torch
from sklearn.datasets import load_iris

import torchzero_bridge as tzb

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", message="COBYLA: Invalid RHOEND")  # raised inside NGOpt
warnings.filterwarnings("ignore", category=RuntimeWarning, module="scipy")  # NGOpt's line searches overflow

X, y = load_iris(return_X_y=True)
X = torch.tensor((X - X.mean(0)) / X.std(0), dtype=torch.float32)
y = torch.tensor(y)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


def accuracy(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float((model(X).argmax(1) == y).float().mean())


def closure_for(model: torch.nn.Module):
    def closure(backward: bool = True) -> torch.Tensor:  # evaluations run under no_grad
        return torch.nn.functional.cross_entropy(model(X), y)

    return closure


# nevergrad: NGOpt picks an algorithm for the budget and dimension; integer/bool tensors
# would become integer/choice variables
model = make_model()
opt = tzb.NevergradWrapper(model.parameters(), "NGOpt", budget=600, seed=0)
loss = float(opt.step(closure_for(model)))
print(f"nevergrad NGOpt        loss {loss:.4f}  accuracy {accuracy(model):.3f}  ({opt.ng_optimizer.name})")
assert accuracy(model) > 0.9

# nevergrad with 8 candidates per round, evaluated as one vmap batch by a BatchObjective
model = make_model()
batch = tzb.BatchObjective(model, lambda m, X, y: torch.nn.functional.cross_entropy(m(X), y), X, y)
opt = tzb.NevergradWrapper(model.parameters(), "TwoPointsDE", budget=1600, num_workers=8, seed=0)
loss = float(opt.step(batch))
print(f"nevergrad TwoPointsDE  loss {loss:.4f}  accuracy {accuracy(model):.3f}  (8 candidates per vmap pass)")

# optuna needs bounds: per parameter group
db = Path(__file__).with_name("optuna_study.db")
storage = os.environ.get("TZB_OPTUNA_STORAGE", f"sqlite:///{db}")
model = make_model()
groups = [{"params": list(model.parameters()), "bounds": (-4.0, 4.0)}]
opt = tzb.OptunaWrapper(groups, n_trials=30, seed=0, storage=storage, study_name="iris-linear")
loss = float(opt.step(closure_for(model)))
n = len(opt.study.trials)
print(f"optuna TPE             loss {loss:.4f}  accuracy {accuracy(model):.3f}  ({n} trials in {storage})")
loss = float(opt.step(closure_for(model)))  # a second step continues the same study
assert len(opt.study.trials) == n + 30 and loss <= opt.study.best_value + 1e-6
