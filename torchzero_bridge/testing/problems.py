"""Reference problems as torch modules, written to match scipy's numpy versions exactly.

Example:
    >>> import torch
    >>> from torchzero_bridge.testing import Rosenbrock
    >>> f = Rosenbrock([1.0, 1.0], [1.0, 1.0])
    >>> float(f())
    0.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["Rosenbrock", "make_closure", "make_rosenbrock_closure"]


class Rosenbrock(torch.nn.Module):
    """Rosenbrock's function with the vector held in several parameter tensors.

    ``f(x) = sum(100 (x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2)``, the same expression as
    ``scipy.optimize.rosen``; the minimum is 0 at ``x = 1``.

    Args:
        *parts: initial values, one parameter tensor each (concatenated in order).
        dtype: parameter dtype.
    """

    def __init__(self, *parts: Sequence[float] | torch.Tensor, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.parts = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(p, dtype=dtype).clone()) for p in parts]
        )

    def vector(self) -> torch.Tensor:
        """All parts concatenated."""
        return torch.cat([p.reshape(-1) for p in self.parts])

    def forward(self) -> torch.Tensor:
        x = self.vector()
        return torch.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0)


def make_closure(model: torch.nn.Module, zero_grad: Callable[[], None] | None = None) -> Callable[..., torch.Tensor]:
    """A ``backward``-aware closure returning ``model()``; ``zero_grad`` defaults to clearing ``.grad``.

    Example:
        >>> f = Rosenbrock([0.0], [0.0])
        >>> make_closure(f)(backward=False).item()
        1.0
    """

    def closure(backward: bool = True) -> torch.Tensor:
        if zero_grad is not None:
            zero_grad()
        else:
            for p in model.parameters():
                p.grad = None
        loss = model()
        if backward:
            loss.backward()
        return loss

    return closure


make_rosenbrock_closure = make_closure  # the name the scipy tests use
