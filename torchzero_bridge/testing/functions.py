"""Sphere and Rastrigin test functions held in several parameter tensors, with numpy twins.

Together with :class:`~torchzero_bridge.testing.Rosenbrock` these are the reference problems
of the derivative-free tests and benchmark: known minima, cheap, and split over more than
one tensor so layout bugs show. ``numpy_*`` functions compute the same values independently.

Example:
    >>> import numpy as np
    >>> from torchzero_bridge.testing.functions import Rastrigin, numpy_rastrigin
    >>> f = Rastrigin([0.5, -1.0], [2.0])
    >>> bool(np.isclose(f().item(), numpy_rastrigin(np.array([0.5, -1.0, 2.0]))))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from torchzero_bridge.core.batch import BatchObjective

__all__ = [
    "Rastrigin",
    "Sphere",
    "batch_objective",
    "make_closure",
    "numpy_rastrigin",
    "numpy_sphere",
]


class _Parts(torch.nn.Module):
    """A vector held in several parameter tensors (concatenated in order)."""

    def __init__(self, *parts: Sequence[float] | torch.Tensor, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if not parts:
            raise ValueError("parts: expected at least one initial value")
        self.parts = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(p, dtype=dtype).clone()) for p in parts]
        )

    def vector(self) -> torch.Tensor:
        """All parts concatenated into one vector."""
        return torch.cat([p.reshape(-1) for p in self.parts])


class Sphere(_Parts):
    """``f(x) = sum((x - shift)**2)``; minimum 0 at ``x = shift``.

    Args:
        *parts: initial values, one parameter tensor each.
        shift: location of the minimum (same value for every entry).
        dtype: parameter dtype.

    Example:
        >>> Sphere([1.0, 0.0], [2.0], shift=1.0)().item()
        2.0
    """

    def __init__(
        self, *parts: Sequence[float] | torch.Tensor, shift: float = 0.0, dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__(*parts, dtype=dtype)
        self.shift = float(shift)

    def forward(self) -> torch.Tensor:
        return torch.sum((self.vector() - self.shift) ** 2)


class Rastrigin(_Parts):
    """``f(x) = 10 n + sum(x**2 - 10 cos(2 pi x))``; minimum 0 at ``x = 0``, a local minimum near every integer point.

    Args:
        *parts: initial values, one parameter tensor each.
        dtype: parameter dtype.

    Example:
        >>> Rastrigin([0.0, 0.0], [0.0])().item()
        0.0
    """

    def forward(self) -> torch.Tensor:
        x = self.vector()
        return 10.0 * x.numel() + torch.sum(x**2 - 10.0 * torch.cos(2.0 * math.pi * x))


def numpy_sphere(x: np.ndarray, shift: float = 0.0) -> float:
    """The sphere function in numpy (independent of the torch module).

    Example:
        >>> numpy_sphere(np.array([1.0, 2.0]), shift=1.0)
        1.0
    """
    x = np.asarray(x, dtype=np.float64)
    return float(np.sum((x - shift) ** 2))


def numpy_rastrigin(x: np.ndarray) -> float:
    """The Rastrigin function in numpy (independent of the torch module).

    Example:
        >>> numpy_rastrigin(np.zeros(3))
        0.0
    """
    x = np.asarray(x, dtype=np.float64)
    return float(10.0 * x.size + np.sum(x**2 - 10.0 * np.cos(2.0 * np.pi * x)))


def make_closure(model: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """A ``backward``-aware closure returning ``model()``.

    Example:
        >>> f = Sphere([1.0], [2.0])
        >>> make_closure(f)(backward=False).item()
        5.0
    """

    def closure(backward: bool = True) -> torch.Tensor:
        for p in model.parameters():
            p.grad = None
        loss = model()
        if backward:
            loss.backward()
        return loss

    return closure


def batch_objective(model: torch.nn.Module) -> BatchObjective:
    """A :class:`~torchzero_bridge.BatchObjective` evaluating ``model()`` at many points at once.

    Example:
        >>> import numpy as np
        >>> from torchzero_bridge.core.flat import FlatParams
        >>> f = Sphere([1.0], [2.0])
        >>> batch_objective(f).evaluate(FlatParams(f.parameters()), np.array([[0.0, 1.0], [1.0, 1.0]])).tolist()
        [1.0, 2.0]
    """
    return BatchObjective(model, _call_model)


def _call_model(model: torch.nn.Module) -> torch.Tensor:
    return model()
