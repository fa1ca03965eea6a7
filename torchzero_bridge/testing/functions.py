"""A shifted sphere held in several parameter tensors, its numpy twin, and closure helpers.

Together with :class:`~torchzero_bridge.testing.Rosenbrock` and
:class:`~torchzero_bridge.testing.global_functions.Rastrigin` this is a reference problem of
the derivative-free tests and benchmark: known minimum, cheap, split over more than one
tensor so layout bugs show. :func:`numpy_sphere` computes the same values independently.

Example:
    >>> import numpy as np
    >>> from torchzero_bridge.testing.functions import Sphere, numpy_sphere
    >>> f = Sphere([0.5, -1.0], [2.0], shift=0.5)
    >>> f().item() == numpy_sphere(np.array([0.5, -1.0, 2.0]), shift=0.5)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from torchzero_bridge.core.batch import BatchObjective
from torchzero_bridge.testing.global_functions import GlobalProblem
from torchzero_bridge.testing.problems import make_closure

__all__ = ["Sphere", "batch_objective", "make_closure", "numpy_sphere"]


class Sphere(GlobalProblem):
    """``f(x) = sum((x - shift)**2)``; minimum 0 at ``x = shift``.

    Args:
        *parts: initial values, one parameter tensor each (concatenated in order).
        shift: location of the minimum (same value for every entry).
        dtype: parameter dtype.

    Example:
        >>> Sphere([1.0, 0.0], [2.0], shift=1.0)().item()
        2.0
    """

    def __init__(
        self, *parts: Sequence[float] | float | torch.Tensor, shift: float = 0.0, dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__(*parts, dtype=dtype)
        self.shift = float(shift)

    def forward(self) -> torch.Tensor:
        return torch.sum((self.vector() - self.shift) ** 2)


def numpy_sphere(x: np.ndarray, shift: float = 0.0) -> float:
    """The sphere function in numpy (independent of the torch module).

    Example:
        >>> numpy_sphere(np.array([1.0, 2.0]), shift=1.0)
        1.0
    """
    x = np.asarray(x, dtype=np.float64)
    return float(np.sum((x - shift) ** 2))


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
