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

__all__ = ["user_stacklevel", "warn_user"]

_SKIP = ("torchzero_bridge.", "torch.")


def user_stacklevel(skip: tuple[str, ...] = _SKIP) -> int:
    """``stacklevel`` for a ``warnings.warn`` in the calling function: its first caller outside ``skip``.

    Example:
        >>> user_stacklevel() >= 2
        True
    """
    level, frame = 2, sys._getframe(2)
    while frame is not None and (str(frame.f_globals.get("__name__", "")) + ".").startswith(skip):
        level, next_frame = level + 1, frame.f_back
        if next_frame is None:
            break
        frame = next_frame
    return level


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn(message, category)`` attributed to the first frame outside the package."""
    warnings.warn(message, category, stacklevel=user_stacklevel())
