"""Option checks shared by every solver: numbers in a range and integers above a minimum.

Each check returns the value converted (``float`` or ``int``) or raises ``ValueError`` with a
message that names who owns the option, the option, the range expected and the value given.

Example:
    >>> check_real(0.5, "shrink", "SequentialSearch", high=1.0)
    0.5
    >>> check_real(1.0, "shrink", "SequentialSearch", high=1.0)
    Traceback (most recent call last):
    ...
    ValueError: SequentialSearch: shrink expected a finite number in (0, 1), got 1.0
    >>> check_int(3, "points", "SequentialSearch")
    3
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_int", "check_positive", "check_real", "check_seed"]


def _scalar(value: Any) -> Any:
    """A 0-d numpy array as its Python scalar (scipy users pass those as options); else ``value``."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _real(value: Any) -> float | None:
    """``value`` as a float if it is a real number (not a bool) that a float can hold, else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return None


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_real(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float | None = 0.0,
    high: float | None = None,
    low_open: bool = True,
    high_open: bool = True,
) -> float:
    """Return ``value`` as a float or raise ``ValueError`` unless it is a finite real in range.

    Args:
        value: the option's value: a real number or a 0-d numpy array holding one (``bool``,
            strings and tensors are rejected).
        name: the option's name, used in the message.
        owner: the class or function the option belongs to, used in the message.
        low: the lower end of the range, or ``None`` for no lower end (default 0).
        high: the upper end of the range, or ``None`` for no upper end (default).
        low_open: exclude ``low`` itself (default, so the default range is ``> 0``).
        high_open: exclude ``high`` itself (default).

    Example:
        >>> check_real(1, "grow", "SequentialSearch", low=1.0, low_open=False)
        1.0
    """
    v = _real(_scalar(value))
    if v is None or not _inside(v, low, high, low_open, high_open):
        where = _interval(low, high, low_open, high_open)
        raise ValueError(f"{owner}: {name} expected a finite number{' ' + where if where else ''}, got {value!r}")
    return v


def _inside(v: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if not math.isfinite(v):
        return False
    if low is not None and not (v > low if low_open else v >= low):
        return False
    return high is None or (v < high if high_open else v <= high)


def check_int(value: Any, name: str, owner: str, *, minimum: int = 1, integral_float: bool = False) -> int:
    """Return ``value`` as an int or raise ``ValueError`` unless it is an integer >= ``minimum``.

    ``bool`` is rejected; numpy integers and 0-d integer arrays are accepted.

    Args:
        value: the option's value.
        name: the option's name, used in the message.
        owner: the class or function the option belongs to, used in the message.
        minimum: the smallest value accepted.
        integral_float: also accept a float with an integral value (``1e4``), as scipy does for
            its iteration counts.

    Example:
        >>> check_int(2, "n_particles", "ParticleSwarm", minimum=2)
        2
        >>> check_int(1e4, "maxiter", "minimize", minimum=0, integral_float=True)
        10000
    """
    v = _scalar(value)
    if integral_float and isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        v = int(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{owner}: {name} expected an int >= {minimum}, got {value!r}")
    return int(v)


def check_positive(value: Any, name: str, owner: str, *, allow_zero: bool = False) -> float:
    """:func:`check_real` for the common range ``> 0`` (or ``>= 0`` with ``allow_zero``).

    Example:
        >>> check_positive(0, "gravity", "SwarmOfOptimizers", allow_zero=True)
        0.0
    """
    return check_real(value, name, owner, low=0.0, low_open=not allow_zero)


_NUMPY_SEED_MAX = 2**32 - 1


def check_seed(seed: Any, *, owner: str | None = None, numpy: bool = False) -> int | None:
    """Return ``seed`` or raise unless it is an int or ``None`` (``bool`` is rejected).

    Args:
        seed: the seed.
        owner: the class the seed belongs to, used in the message of a seed out of range.
        numpy: the seed goes to ``numpy.random.RandomState``, which takes ``0 <= seed < 2**32``.

    Raises:
        TypeError: not an int or ``None``.
        ValueError: with ``numpy``, an int outside numpy's range.

    Example:
        >>> check_seed(0), check_seed(None)
        (0, None)
        >>> check_seed(-1, owner="NevergradWrapper", numpy=True)
        Traceback (most recent call last):
        ...
        ValueError: NevergradWrapper: seed expected an int in [0, 2**32 - 1] (numpy's seed range), got -1
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
    if numpy and seed is not None and not 0 <= seed <= _NUMPY_SEED_MAX:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}seed expected an int in [0, 2**32 - 1] (numpy's seed range), got {seed!r}")
    return seed
