"""Point: one evaluated point remembered by an :class:`~torchzero_bridge.core.objective.Objective`.

Example:
    >>> import numpy as np
    >>> from torchzero_bridge.core.point import Point
    >>> e = Point(np.array([1.0, 2.0]), 3.0, None, None)
    >>> e.first, e.f, e.g is None
    (1.0, 3.0, True)
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["Point"]


class Point:
    """One evaluated point: ``x`` (a pooled buffer), loss, gradient, kept autograd graph."""

    __slots__ = ("f", "first", "g", "gradless", "graph", "version", "x")

    def __init__(
        self, x: np.ndarray, f: float, g: np.ndarray | None, graph: tuple[list[torch.Tensor], list[int]] | None
    ) -> None:
        self.x = x
        self.first = x.item(0)
        self.f = f
        self.g = g
        self.graph = graph
        self.version = -1  # FlatParams.version when the parameters last held x
        self.gradless = False  # the closure ran with backward here and left no gradient
