"""Helpers the derivative-free optimizers share around their flat space.

The space itself, :class:`~torchzero_bridge.core.device.FlatSpace`, lives in ``core/``.

Example:
    >>> import torch
    >>> to_device([torch.zeros(1, dtype=torch.bool)], torch.device("cpu"))
    [tensor([False])]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.device import INTEGER_OPTIMIZERS, FlatSpace
from torchzero_bridge.errors import IgnoredOptionWarning

__all__ = [
    "INTEGER_OPTIMIZERS",
    "FlatSpace",
    "check_saved_shape",
    "put_back",
    "to_device",
    "warn_ignored",
    "write_best",
]


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


def check_saved_shape(st: dict[str, Any], key: str, shape: tuple[int, ...], note: str = "") -> None:
    """Refuse a checkpoint whose tensor ``st[key]`` (when present) does not have ``shape``.

    Example:
        >>> import torch
        >>> check_saved_shape({"vel": torch.zeros(2, 3)}, "vel", (2, 3))
        >>> check_saved_shape({"vel": torch.zeros(1, 3)}, "vel", (2, 3), " for max_order=3")
        Traceback (most recent call last):
        ...
        ValueError: state_dict: saved 'vel' has shape (1, 3), expected (2, 3) for max_order=3
    """
    t = st.get(key)
    if t is not None and tuple(t.shape) != shape:
        raise ValueError(f"state_dict: saved {key!r} has shape {tuple(t.shape)}, expected {shape}{note}")


def put_back(tensors: list[torch.Tensor], write: Callable[[], None]) -> None:
    """Run ``write`` (which puts values into ``tensors``), then clear their ``.grad``, to the end.

    A KeyboardInterrupt landing in the middle does the whole thing again and is raised once it
    is complete, so an interrupt never leaves half the tensors at a trial point, nor gradients
    that belong to one.

    Example:
        >>> import torch
        >>> w = torch.zeros(2, requires_grad=True)
        >>> w.grad = torch.ones(2)
        >>> put_back([w], lambda: w.data.copy_(torch.tensor([1.0, 2.0])))
        >>> w.tolist(), w.grad
        ([1.0, 2.0], None)
    """
    pending: BaseException | None = None
    while True:
        try:
            write()
            for p in tensors:
                p.grad = None
            break
        except KeyboardInterrupt as exc:
            pending = exc
    if pending is not None:
        raise pending


def write_best(space: FlatSpace, best: torch.Tensor) -> None:
    """Write the incumbent and drop gradients from trial points; a KeyboardInterrupt mid-write rewrites it."""
    put_back(list(space.flat.params), lambda: space.write(best))
