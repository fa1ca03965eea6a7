"""The one ``state_dict`` format: tensors and plain Python values only.

A checkpoint must load with ``torch.load``'s secure default (``weights_only=True``) and loading
must never unpickle anything, so every state is made of ``torch.Tensor``, ``dict``, ``list``,
``tuple``, ``int``, ``float``, ``bool``, ``str`` and ``None``. :func:`to_plain` converts the
host-side values the external-solver wrappers keep (numpy arrays and scalars, scipy
``OptimizeResult``\\ s) into that form; :func:`from_plain` turns tensors back into numpy arrays
for code that works on the float64 host vector. :func:`check_plain` validates a loaded state
before anything uses it.

Example:
    >>> import numpy as np
    >>> from torchzero_bridge.core.state import from_plain, to_plain
    >>> plain = to_plain({"x": np.array([1.0, 2.0]), "fun": np.float64(0.5), "f": print}, drop_objects=True)
    >>> sorted(plain), type(plain["x"]).__name__, type(plain["fun"]).__name__
    (['fun', 'x'], 'Tensor', 'float')
    >>> from_plain(plain)["x"].tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["check_plain", "from_plain", "to_plain"]

_SCALARS = (bool, int, float, str, type(None))
_DROP = object()


def to_plain(value: Any, *, drop_objects: bool = False, where: str = "state") -> Any:
    """``value`` with numpy arrays as tensors, numpy scalars as Python numbers, mappings as dicts.

    Args:
        value: nested dicts (any ``Mapping``, e.g. ``OptimizeResult``), lists, tuples, arrays,
            tensors and scalars.
        drop_objects: leave out any other object (callables, scipy operators, pools) instead
            of raising; inside a list or tuple such an object becomes ``None``.
        where: path used in error messages.

    Raises:
        TypeError: an object that is not plain data, when ``drop_objects`` is false.
    """
    out = _convert(value, drop_objects, where)
    return None if out is _DROP else out


def _convert(value: Any, drop: bool, where: str) -> Any:
    if isinstance(value, bool) or type(value) in _SCALARS:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.generic):
        return value.item() if not isinstance(value, np.object_) else _convert(value.item(), drop, where)
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [_convert(v, drop, f"{where}[{i}]") for i, v in enumerate(value.tolist())]
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, (int, float, str)):  # subclasses (IntEnum, ...) as the plain base type
        base = int if isinstance(value, int) else float if isinstance(value, float) else str
        return base(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                if drop:
                    continue
                raise TypeError(f"{where}: key {k!r} is not a str or int")
            c = _convert(v, drop, f"{where}[{k!r}]")
            if c is not _DROP:
                out[k] = c
        return out
    if isinstance(value, (list, tuple)):
        items = [_convert(v, drop, f"{where}[{i}]") for i, v in enumerate(value)]
        items = [None if v is _DROP else v for v in items]
        return items if isinstance(value, list) else tuple(items)
    if drop:
        return _DROP
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be saved in a state_dict (only tensors and plain Python values)"
    )


def from_plain(value: Any) -> Any:
    """``value`` with every tensor as a numpy array (CPU copy); everything else unchanged.

    Example:
        >>> import torch
        >>> from_plain({"a": [torch.ones(2)]})["a"][0].tolist()
        [1.0, 1.0]
    """
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_plain(v) for v in value)
    return value


def check_plain(value: Any, where: str = "state_dict") -> None:
    """Raise ``TypeError`` naming the first entry that is not a tensor or plain Python value.

    Loading code calls this before using a state, so a crafted state (e.g. holding ``bytes``
    meant for ``pickle.loads``, or an object) is refused before anything reads it.

    Example:
        >>> check_plain({"a": [1, 2.0, "x", None]})
        >>> check_plain({"blob": b"..."})
        Traceback (most recent call last):
        ...
        TypeError: state_dict['blob']: expected a tensor or a plain Python value, got bytes
    """
    if isinstance(value, torch.Tensor) or type(value) in _SCALARS:
        return
    if type(value) is dict:
        for k, v in value.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where}: key {k!r} is not a str or int")
            check_plain(v, f"{where}[{k!r}]")
        return
    if type(value) in (list, tuple, torch.Size):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: expected a tensor or a plain Python value, got {type(value).__name__}")
