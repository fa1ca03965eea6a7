"""Warnings that point at the user's line, however deep inside the package they are raised.

Every warning of the package goes through :func:`warn_user`, which attributes it to the first
frame outside this package, torch and the solver libraries it calls back from (scipy, numpy,
nevergrad, optuna, cma): the line of the user's code that called into the package. No call
site counts frames by hand.

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

__all__ = ["user_stacklevel", "warn_user"]

_SKIP = ("torchzero_bridge.", "torch.", "scipy.", "numpy.", "nevergrad.", "optuna.", "cma.")
"""Module prefixes whose frames are never the user's line (the package and what calls back into it)."""


def user_stacklevel(skip: tuple[str, ...] = _SKIP) -> int:
    """``stacklevel`` for a ``warnings.warn`` in the calling function: its first caller outside ``skip``.

    Example:
        >>> user_stacklevel() >= 2
        True
    """
    level, frame = 2, sys._getframe(2)
    while (str(frame.f_globals.get("__name__", "")) + ".").startswith(skip):
        next_frame = frame.f_back
        if next_frame is None:
            break
        level, frame = level + 1, next_frame
    return level


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the user's line (see the module docstring).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_user("the start was clipped")
        >>> caught[0].category.__name__
        'UserWarning'
    """
    warnings.warn(message, category, stacklevel=user_stacklevel())
