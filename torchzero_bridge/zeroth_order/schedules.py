"""Population-size schedules: how many particles, offspring or ensemble members a step uses.

A schedule is any callable ``size(step) -> int`` of the 0-based step index. The population methods
(:class:`~torchzero_bridge.zeroth_order.ParticleSwarm`,
:class:`~torchzero_bridge.zeroth_order.EvolutionStrategy`,
:class:`~torchzero_bridge.zeroth_order.EnsembleKalmanInversion`,
:class:`~torchzero_bridge.zeroth_order.SwarmOfOptimizers`) take one as ``size_schedule=``;
populations only grow: a value below the current size keeps the current size. The randomized
gradient estimators take one as ``n_samples_schedule=`` (directions per estimate, the step index
counting their estimates); there the count follows the schedule exactly.

Named schedules, with ``base`` the optimizer's own size option (e.g. ``n_particles``):

* ``"linear"``: :class:`LinearGrowth` ``(base, by=1, every=1, limit=4 * base)``: one member more per step;
* ``"geometric"``: :class:`GeometricGrowth` ``(base, factor=2, every=10, limit=8 * base)``: doubling
  every 10 steps.

Example:
    >>> size = resolve_size_schedule("geometric", 5, "n_particles", "ParticleSwarm")
    >>> [size(t) for t in (0, 9, 10, 25, 1000)]
    [5, 5, 10, 20, 40]
    >>> LinearGrowth(4, by=2, every=3)(7)
    8
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Union

from torchzero_bridge._checks import check_int, check_real

__all__ = ["SCHEDULES", "GeometricGrowth", "LinearGrowth", "SizeSchedule", "resolve_size_schedule"]

SizeSchedule = Union[None, str, Callable[[int], int]]
"""What ``size_schedule=`` accepts: ``None``, a name in :data:`SCHEDULES` or a callable of the step."""

SCHEDULES = ("linear", "geometric")


class LinearGrowth:
    """``min(limit, start + by * (step // every))``.

    Args:
        start: the size at step 0.
        by: members added at each growth.
        every: steps between growths.
        limit: the largest size (``None``: no limit).

    Example:
        >>> [LinearGrowth(2, by=3, every=2, limit=7)(t) for t in range(6)]
        [2, 2, 5, 5, 7, 7]
    """

    def __init__(self, start: int, by: int = 1, every: int = 1, limit: int | None = None) -> None:
        self.start = check_int(start, "start", "LinearGrowth")
        self.by = check_int(by, "by", "LinearGrowth", minimum=0)
        self.every = check_int(every, "every", "LinearGrowth")
        self.limit = None if limit is None else check_int(limit, "limit", "LinearGrowth", minimum=self.start)

    def __call__(self, step: int) -> int:
        size = self.start + self.by * (step // self.every)
        return size if self.limit is None else min(self.limit, size)

    def __repr__(self) -> str:
        return f"LinearGrowth({self.start}, by={self.by}, every={self.every}, limit={self.limit})"


class GeometricGrowth:
    """``min(limit, round(start * factor ** (step // every)))``.

    Args:
        start: the size at step 0.
        factor: growth factor (at least 1).
        every: steps between growths.
        limit: the largest size (``None``: no limit).

    Example:
        >>> [GeometricGrowth(3, factor=1.5, every=1, limit=10)(t) for t in range(5)]
        [3, 4, 7, 10, 10]
    """

    def __init__(self, start: int, factor: float = 2.0, every: int = 10, limit: int | None = None) -> None:
        self.start = check_int(start, "start", "GeometricGrowth")
        self.factor = check_real(factor, "factor", "GeometricGrowth", low=1.0, low_open=False)
        self.every = check_int(every, "every", "GeometricGrowth")
        self.limit = None if limit is None else check_int(limit, "limit", "GeometricGrowth", minimum=self.start)

    def __call__(self, step: int) -> int:
        k = step // self.every
        if self.limit is not None and self.factor > 1 and k > math.log(self.limit / self.start, self.factor) + 1:
            return self.limit  # avoids overflowing factor ** k on long runs
        size = round(self.start * self.factor**k)
        return size if self.limit is None else min(self.limit, size)

    def __repr__(self) -> str:
        return f"GeometricGrowth({self.start}, factor={self.factor}, every={self.every}, limit={self.limit})"


def resolve_size_schedule(
    schedule: SizeSchedule, base: int, name: str, owner: str, *, minimum: int = 1, option: str = "size_schedule"
) -> Callable[[int], int]:
    """The schedule as a checked callable ``size(step) -> int`` (sizes below ``minimum`` raise).

    Args:
        schedule: ``None`` (always ``base``), a name in :data:`SCHEDULES` or a callable of the step.
        base: the optimizer's size option, the start of the named schedules.
        name: that option's name, for messages.
        owner: the optimizer's class name, for messages.
        minimum: the smallest size the method works with.
        option: the name of the schedule option, for messages (the estimators' ``n_samples_schedule``).

    Raises:
        ValueError: an unknown name; later, when called, a size that is not an int >= ``minimum``.
        TypeError: neither ``None``, a string nor a callable.

    Example:
        >>> resolve_size_schedule(None, 8, "n_particles", "ParticleSwarm")(100)
        8
        >>> resolve_size_schedule(lambda t: 1, 8, "n_particles", "ParticleSwarm", minimum=2)(0)
        Traceback (most recent call last):
        ...
        ValueError: ParticleSwarm: size_schedule(0) for n_particles expected an integer >= 2, got 1
    """
    if schedule is None:
        return lambda step: base
    if isinstance(schedule, str):
        if schedule == "linear":
            inner: Callable[[int], Any] = LinearGrowth(base, by=1, every=1, limit=4 * base)
        elif schedule == "geometric":
            inner = GeometricGrowth(base, factor=2.0, every=10, limit=8 * base)
        else:
            raise ValueError(f"{owner}: {option} expected one of {SCHEDULES} or a callable, got {schedule!r}")
    elif callable(schedule):
        inner = schedule
    else:
        raise TypeError(f"{owner}: {option} expected None, a name or a callable of the step, got {schedule!r}")

    def size(step: int) -> int:
        value = inner(step)
        try:
            return check_int(value, f"{option}({step}) for {name}", owner, minimum=minimum)
        except ValueError:
            raise ValueError(
                f"{owner}: {option}({step}) for {name} expected an integer >= {minimum}, got {value!r}"
            ) from None

    return size
