"""Whether a whole-run step's start point was evaluated by the solver itself.

A step that is a whole solve must never end worse than it started, so the start point's loss
must be known. :class:`StartWatch` is an ``on_eval`` hook that notices when the solver
evaluated the start; only when it did not is the start evaluated once more, after the run
(so the solver's own sequence of evaluations is unchanged).

Example:
    >>> import numpy as np
    >>> class Obj:
    ...     last_x = np.array([1.0, 2.0])
    >>> w = StartWatch(Obj(), np.array([1.0, 2.0]))
    >>> w.chain(None)(0.5); w.seen
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import OptimizeResult

__all__ = ["StartWatch", "note"]


class StartWatch:
    """Notices whether the solver itself evaluated the start point (an ``on_eval`` hook).

    A point within ``tol`` (absolute, ``1e-12`` times the start's largest magnitude, at least
    ``1e-12``) of the start in every entry counts: solvers that map the start through their own
    scaling (differential evolution's unit cube) evaluate it up to rounding.

    Args:
        objective: has ``last_x``, the point evaluated last.
        x0: the start point.
    """

    def __init__(self, objective: Any, x0: np.ndarray) -> None:
        self.objective = objective
        self.x0 = x0
        self.first = x0.item(0) if x0.size else 0.0
        self.tol = 1e-12 * max(1.0, float(np.max(np.abs(x0)))) if x0.size else 0.0
        self.seen = x0.size == 0
        self.evaluated = False  # set by the optimizer when it evaluated the start itself, after the run

    def chain(self, inner: Callable[[float], None] | None) -> Callable[[float], None]:
        """An ``on_eval`` that checks the point just evaluated, then calls ``inner``."""

        def on_eval(f: float) -> None:
            if not self.seen:
                last = self.objective.last_x
                if (
                    last is not None
                    and abs(last.item(0) - self.first) <= self.tol
                    and float(np.max(np.abs(last - self.x0))) <= self.tol
                ):
                    self.seen = True
            if inner is not None:
                inner(f)

        return on_eval


def note(result: OptimizeResult, text: str) -> None:
    """Append ``text`` to ``result.message`` in parentheses."""
    msg = result.get("message")
    result.message = f"{msg} ({text})" if msg else text
