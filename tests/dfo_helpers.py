"""Shared pieces of the derivative-free optimizer tests: problems, a spying closure, a run loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize
import torch

from torchzero_bridge.testing import Rosenbrock
from torchzero_bridge.testing.functions import Sphere, batch_objective, make_closure, numpy_sphere
from torchzero_bridge.testing.global_functions import Rastrigin, rastrigin

SHIFT = 0.5


@dataclass(frozen=True)
class Problem:
    """A test function in 3 dimensions held in two tensors of shapes (2,) and (1,)."""

    name: str
    start: tuple[float, ...]
    build: Callable[..., torch.nn.Module]
    numpy_f: Callable[[np.ndarray], float]
    argmin: tuple[float, ...]

    def model(self, start: tuple[float, ...] | None = None, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
        x0 = list(self.start if start is None else start)
        return self.build(x0[:2], x0[2:], dtype=dtype)


PROBLEMS = {
    "sphere": Problem(
        "sphere",
        (-1.2, 1.0, 0.8),
        lambda *parts, dtype: Sphere(*parts, shift=SHIFT, dtype=dtype),
        lambda x: numpy_sphere(x, SHIFT),
        (SHIFT,) * 3,
    ),
    "rosen": Problem("rosen", (-1.2, 1.0, 1.0), Rosenbrock, scipy.optimize.rosen, (1.0,) * 3),
    "rastrigin": Problem("rastrigin", (2.3, -1.7, 3.1), Rastrigin, lambda x: float(rastrigin(x)), (0.0,) * 3),
}


def flat_values(model: torch.nn.Module) -> np.ndarray:
    """The model's parameters concatenated, as float64 numpy (independent of the library)."""
    return np.concatenate([p.detach().cpu().double().reshape(-1).numpy() for p in model.parameters()])


@dataclass
class Spy:
    """A ``backward``-aware closure that records every point it is evaluated at."""

    model: torch.nn.Module
    xs: list[np.ndarray] = field(default_factory=list)
    fs: list[float] = field(default_factory=list)

    def __call__(self, backward: bool = True) -> torch.Tensor:
        loss = make_closure(self.model)(backward=backward)
        self.xs.append(flat_values(self.model))
        self.fs.append(float(loss.detach()))
        return loss

    def best(self) -> tuple[np.ndarray, float]:
        """The lowest finite loss recorded and the first point where it was seen."""
        fs = np.array([f if np.isfinite(f) else np.inf for f in self.fs])
        i = int(np.argmin(fs))
        return self.xs[i], float(fs[i])


def run(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    problem: Problem,
    budget: int,
    *,
    batched: bool = False,
    start: tuple[float, ...] | None = None,
    max_steps: int | None = None,
) -> tuple[Any, torch.nn.Module, list[float]]:
    """Step until ``opt.nfev >= budget`` (or ``max_steps``); return optimizer, model, step losses."""
    model = problem.model(start)
    opt = make(list(model.parameters()))
    closure = batch_objective(model) if batched else make_closure(model)
    losses: list[float] = []
    steps = 0
    limit = max_steps if max_steps is not None else 10 * budget
    while opt.nfev < budget and steps < limit:
        losses.append(float(opt.step(closure)))
        steps += 1
    return opt, model, losses
