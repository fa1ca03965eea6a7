"""Helpers the derivative-free optimizers share around their flat space.

The space itself, :class:`~torchzero_bridge.core.device.FlatSpace`, lives in ``core/``.

Example:
    >>> import torch
    >>> to_device([torch.zeros(1, dtype=torch.bool)], torch.device("cpu"))
    [tensor([False])]
"""

from __future__ import annotations

from typing import Any

import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.device import INTEGER_OPTIMIZERS, FlatSpace
from torchzero_bridge.errors import IgnoredOptionWarning

__all__ = ["INTEGER_OPTIMIZERS", "FlatSpace", "to_device", "warn_ignored", "write_best"]


def warn_ignored(option: str, reason: str) -> None:
    """Warn (:class:`~torchzero_bridge.errors.IgnoredOptionWarning`) that ``option`` has no effect.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_ignored("std", "the uniform sampler does not use it")
        >>> str(caught[0].message)
        'std is ignored: the uniform sampler does not use it'
    """
    warn_user(f"{option} is ignored: {reason}", IgnoredOptionWarning)


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` (tensors in nested dicts and lists) with its float and bool tensors moved to ``device``.

    Example:
        >>> to_device({"x": [torch.zeros(1)]}, torch.device("cpu"))
        {'x': [tensor([0.])]}
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device) if obj.is_floating_point() or obj.dtype == torch.bool else obj
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


def write_best(space: FlatSpace, best: torch.Tensor) -> None:
    """Write the incumbent and drop gradients from trial points; a KeyboardInterrupt mid-write rewrites it."""
    pending: BaseException | None = None
    while True:
        try:
            space.write(best)
            for p in space.flat.params:  # gradients from a trial point would not match the parameters
                p.grad = None
            break
        except KeyboardInterrupt as exc:
            pending = exc
    if pending is not None:
        raise pending
