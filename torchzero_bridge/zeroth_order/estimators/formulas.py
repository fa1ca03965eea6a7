"""Finite-difference stencils shared by :class:`FDM` and :class:`RandomizedFDM`.

A formula approximates ``φ'(0)`` for ``φ(t) = f(x + t s)`` (``s`` a coordinate step or a
scaled random direction) as ``center·φ(0) + Σ c_k φ(t_k)``, divided by the step length.
The number in the name is the number of stencil points; the error order is the power of
the step in the leading error term.

========== ============================ ============ ==================== =================
formula     points ``t``                 error        runs per coordinate   loss returned
========== ============================ ============ ==================== =================
forward2    0, +1                        O(h)         1 (+1 shared f(x))    f(x)
backward2   0, -1                        O(h)         1 (+1 shared f(x))    f(x)
central3    -1, +1                       O(h²)        2                     mean f(x ± h)
forward3    0, +1, +2                    O(h²)        2 (+1 shared f(x))    f(x)
backward3   0, -1, -2                    O(h²)        2 (+1 shared f(x))    f(x)
central5    -2, -1, +1, +2               O(h⁴)        4                     mean f(x ± h)
========== ============================ ============ ==================== =================

Example:
    >>> from torchzero_bridge.zeroth_order.estimators.formulas import get_formula
    >>> get_formula("central3", "FDM").evaluations(10)
    20
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FORMULAS", "Formula", "get_formula"]


@dataclass(frozen=True)
class Formula:
    """A one-dimensional finite-difference stencil.

    Attributes:
        name: the formula's name.
        center: weight of ``φ(0)`` (0 when ``f(x)`` is not needed).
        points: ``(t, weight)`` pairs for the other stencil points, in evaluation order.
        order: power of ``h`` in the leading error term.
    """

    name: str
    center: float
    points: tuple[tuple[int, float], ...]
    order: int

    @property
    def uses_center(self) -> bool:
        """Whether ``f(x)`` itself is evaluated (once, shared by all coordinates/samples)."""
        return self.center != 0.0

    def evaluations(self, n: int) -> int:
        """Closure runs for ``n`` coordinates or samples."""
        return len(self.points) * n + (1 if self.uses_center else 0)


FORMULAS: dict[str, Formula] = {
    "forward2": Formula("forward2", -1.0, ((1, 1.0),), 1),
    "backward2": Formula("backward2", 1.0, ((-1, -1.0),), 1),
    "central3": Formula("central3", 0.0, ((-1, -0.5), (1, 0.5)), 2),
    "forward3": Formula("forward3", -1.5, ((1, 2.0), (2, -0.5)), 2),
    "backward3": Formula("backward3", 1.5, ((-1, -2.0), (-2, 0.5)), 2),
    "central5": Formula("central5", 0.0, ((-2, 1 / 12), (-1, -8 / 12), (1, 8 / 12), (2, -1 / 12)), 4),
}


def get_formula(formula: str, owner: str) -> Formula:
    """The :class:`Formula` named ``formula``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).

    Example:
        >>> get_formula("central5", "FDM").order
        4
    """
    try:
        return FORMULAS[formula]
    except (KeyError, TypeError):
        raise ValueError(f"{owner}: formula expected one of {tuple(FORMULAS)}, got {formula!r}") from None
