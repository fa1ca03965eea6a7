"""Notes on a whole-run step's answer.

A step that is a whole solve must never end worse than it started; when the start point (or an
earlier step's best point) wins over the solver's answer, :func:`note` says so in
``result.message``. Whether the solver itself evaluated the start is tracked by the objective's
:class:`~torchzero_bridge.core.record.EvalRecord` (``start_seen``).

Example:
    >>> from scipy.optimize import OptimizeResult
    >>> r = OptimizeResult(message="done")
    >>> note(r, "the start point is better")
    >>> r.message
    'done (the start point is better)'
"""

from __future__ import annotations

from scipy.optimize import OptimizeResult

__all__ = ["note"]


def note(result: OptimizeResult, text: str) -> None:
    """Append ``text`` to ``result.message`` in parentheses."""
    msg = result.get("message")
    result.message = f"{msg} ({text})" if msg else text
