"""Warnings that point at the user's line, however deep inside the package they are raised.

Example:
    >>> import warnings
    >>> from torchzero_bridge._warn import warn_user
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_user("demo", UserWarning)
    >>> caught[0].filename.endswith(".py") or caught[0].filename.startswith("<doctest")
    True
"""

from __future__ import annotations

import sys
import warnings

__all__ = ["warn_user"]

# frames of these modules are skipped when looking for the user's line
_INTERNAL = ("torchzero_bridge.", "torch.optim.", "torch.utils._contextlib")


def _user_stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` called by :func:`warn_user`: the first outside frame."""
    frame = sys._getframe(2)  # the caller of warn_user
    level = 2
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (name + ".").startswith(_INTERNAL) and name != "torchzero_bridge":
            return level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn(message, category)`` attributed to the first frame outside the package."""
    warnings.warn(message, category, stacklevel=_user_stacklevel())
