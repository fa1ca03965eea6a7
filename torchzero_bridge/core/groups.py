"""Reading what the user passed: param groups, tensor labels, and bound specifications.

:class:`~torchzero_bridge.core.layout.Layout` reads groups and every bound through these
functions: scipy-style flat bounds and per-group ``bounds=(lo, hi)`` entries.

Example:
    >>> lo, hi = parse_flat_bounds([(0, 1), (None, 2)], 2)
    >>> lo.tolist(), hi.tolist()
    ([0.0, -inf], [1.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["BoundsLike", "as_groups", "expand_bound", "label_of", "parse_flat_bounds", "per_param", "signature"]

BoundsLike = Any  # None | number | Tensor | sequence of those (one per tensor in the group)


def parse_flat_bounds(spec: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse scipy-style flat bounds (``scipy.optimize.Bounds`` or ``n`` ``(lo, hi)`` pairs) into two vectors."""
    lb = getattr(spec, "lb", None)
    ub = getattr(spec, "ub", None)
    if lb is not None and ub is not None:  # scipy.optimize.Bounds
        lo = np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,)).copy()
        hi = np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,)).copy()
        return lo, hi
    pairs = list(spec)
    if len(pairs) != n:
        raise ValueError(f"bounds: expected {n} (lo, hi) pairs, one per flat parameter entry, got {len(pairs)}")
    lo = np.empty(n)
    hi = np.empty(n)
    for k, pair in enumerate(pairs):
        try:
            a, b = pair
        except (TypeError, ValueError):
            raise ValueError(f"bounds[{k}]: expected a (lo, hi) pair, got {pair!r}") from None
        lo[k] = -np.inf if a is None else float(a)
        hi[k] = np.inf if b is None else float(b)
    return lo, hi


def per_param(spec: Any, count: int, gi: int, side: int) -> list[Any]:
    """One bound spec per tensor of a group: a shared spec, or a list with one per tensor.

    Example:
        >>> per_param(0.0, 2, 0, 0), per_param([0.0, None], 2, 0, 0)
        ([0.0, 0.0], [0.0, None])
    """
    if isinstance(spec, (list, tuple)) and count > 1:
        if len(spec) != count:
            which = "lo" if side == 0 else "hi"
            raise ValueError(
                f"param_groups[{gi}]['bounds'] {which}: expected a scalar, a tensor, or a list of "
                f"{count} entries (one per tensor in the group), got a list of {len(spec)}"
            )
        return list(spec)
    return [spec] * count


def expand_bound(spec: Any, p: torch.Tensor, where: str) -> np.ndarray:
    """One side's bound for tensor ``p`` as a flat float64 array over its (real) entries.

    A scalar fills every entry; an array or tensor broadcasts to ``p``'s shape (for a complex
    ``p``, one bound per complex entry applies to both its real and imaginary parts).

    Example:
        >>> expand_bound(torch.tensor([1.0, 2.0]), torch.zeros(2, 2), "bounds").tolist()
        [1.0, 2.0, 1.0, 2.0]
    """
    shape = (*p.shape, 2) if p.is_complex() else tuple(p.shape)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return np.full(int(np.prod(shape)), float(spec))
    if isinstance(spec, torch.Tensor):
        t = spec.detach()
        if t.is_complex():
            t = torch.view_as_real(t)
        arr = t.to(device="cpu", dtype=torch.float64).numpy()
    else:
        arr = np.asarray(spec, dtype=np.float64)
    try:
        if p.is_complex() and arr.shape != shape:
            arr = np.broadcast_to(arr[..., None], (*p.shape, 2)) if arr.ndim else np.broadcast_to(arr, shape)
        out = np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(
            f"{where}: shape {arr.shape} does not broadcast to the parameter's shape {tuple(p.shape)}"
        ) from None
    return out.reshape(-1)


def signature(param_groups: Iterable[Mapping[str, Any]], options: Sequence[str] | None = None) -> tuple[Any, ...]:
    """What a cached layout depends on: the groups' options (by identity) and tensors.

    ``options`` names the group options that count (default: all of them).

    A tensor counts by identity, dtype, device, shape, strides and storage address, so a
    ``model.double()`` or a ``p.data = ...`` rebinding asks for a new layout.

    Example:
        >>> w = torch.zeros(2)
        >>> signature([{"params": [w]}]) == signature([{"params": [w]}])
        True
    """
    return tuple(
        (
            tuple((k, id(v)) for k, v in g.items() if k != "params" and (options is None or k in options)),
            tuple((id(p), p.dtype, p.device, tuple(p.shape), p.stride(), p.data_ptr()) for p in g["params"]),
        )
        for g in param_groups
    )


def as_groups(param_groups: Any) -> list[Mapping[str, Any]]:
    """The groups as dicts with a ``params`` list (a plain iterable of tensors is one group)."""
    if isinstance(param_groups, torch.Tensor):
        raise TypeError("params: expected an iterable of tensors or of param-group dicts, got a single Tensor")
    items = list(param_groups)
    if items and isinstance(items[0], Mapping):
        groups: list[Mapping[str, Any]] = []
        for gi, g in enumerate(items):
            if not isinstance(g, Mapping) or "params" not in g:
                raise TypeError(f"param_groups[{gi}]: expected a dict with a 'params' entry")
            ps = g["params"]
            ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
            groups.append({**g, "params": ps})
        return groups
    return [{"params": items}]


def label_of(gi: int, j: int, p: Any, name: str | None) -> str:
    """How messages name tensor ``j`` of group ``gi``: its name if given, else its position; shape and dtype."""
    where = f"'{name}'" if name else f"param_groups[{gi}]['params'][{j}]"
    if isinstance(p, torch.Tensor):
        return f"{where} (shape {tuple(p.shape)}, {p.dtype})"
    return where
