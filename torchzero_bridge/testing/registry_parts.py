"""Building blocks of the registry rows: reference problems, factory helpers and shared capability flags.

Example:
    >>> from torchzero_bridge.testing.registry_parts import _rosen
    >>> float(_rosen()()) > 0
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from torchzero_bridge.testing.entry import Factory
from torchzero_bridge.testing.functions import Sphere
from torchzero_bridge.testing.global_functions import Rastrigin
from torchzero_bridge.testing.problems import Rosenbrock


def _rosen() -> torch.nn.Module:
    return Rosenbrock([-1.2, 1.0], [0.8])


def _sphere() -> torch.nn.Module:
    return Sphere([0.9, -0.4], [0.3], shift=0.25)


def _rastrigin() -> torch.nn.Module:
    return Rastrigin.at([1.3, -0.7, 0.4])


def _boxed(params: Iterable[Any], lo: float = -2.0, hi: float = 2.0) -> list[dict[str, Any]]:
    """One group ``bounds=(lo, hi)`` over tensors, or each given group with that box unless it has its own."""
    items = list(params)
    if items and isinstance(items[0], dict):
        return [{"bounds": (lo, hi), **g} for g in items]
    return [{"params": items, "bounds": (lo, hi)}]


def _tzb() -> Any:
    import torchzero_bridge

    return torchzero_bridge


def _t(name: str) -> Any:
    return getattr(_tzb(), name)


def _ng(name: str, **kw: Any) -> Factory:
    return lambda p, **o: _t("NevergradWrapper")(p, name, budget=40, evals_per_step=8, seed=3, **kw, **o)


def _optuna(sampler: str) -> Factory:
    def make(p: Iterable[Any], **options: Any) -> torch.optim.Optimizer:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers = {
            "TPE": lambda: optuna.samplers.TPESampler(seed=5, n_startup_trials=4),
            "Random": lambda: optuna.samplers.RandomSampler(seed=5),
            "NSGAII": lambda: optuna.samplers.NSGAIISampler(seed=5, population_size=4),
        }
        return _t("OptunaWrapper")(_boxed(p), samplers[sampler](), n_trials=6, **options)

    return make


def _adam(p: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.Adam(p, lr=0.05)


def _minimize(method: str, maxiter: int) -> Factory:
    return lambda p, **o: _t("MinimizeWrapper")(p, method=method, options={"maxiter": maxiter}, **o)


def _only(name: str, *args: Any, boxed: bool = False, **kw: Any) -> Factory:
    """The class with only its required arguments (bounds where the method needs a box)."""
    return lambda p: _t(name)(_boxed(p) if boxed else p, *args, **kw)


# flags shared by families
_SCIPY: dict[str, Any] = {"whole_run": True, "callback": True, "timeout": True}
_GLOBAL: dict[str, Any] = {**_SCIPY, "best_point": True, "bounds": True}
_NG: dict[str, Any] = {
    **_SCIPY,
    "best_point": True,
    "integers": True,
    "bounds": True,
    "stochastic": True,
    "minimal": _only("NevergradWrapper", budget=20),
}
_OPTUNA: dict[str, Any] = {**_NG, "minimal": _only("OptunaWrapper", boxed=True, n_trials=3)}
_ESTIMATOR: dict[str, Any] = {"loss_at_answer": False, "bounds": True, "stochastic": True}
_DFO: dict[str, Any] = {"best_point": True, "bounds": True, "stochastic": True}
