"""The flat vector view of the parameters that every derivative-free optimizer searches in.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.space import FlatSpace
    >>> w = torch.zeros(3, requires_grad=True)
    >>> FlatSpace([{"params": [w], "bounds": (0.0, 1.0)}], allow_integer=False, owner="doc").n
    3
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.errors import IgnoredOptionWarning

__all__ = ["INTEGER_OPTIMIZERS", "FlatSpace", "to_device", "warn_ignored", "write_best"]

INTEGER_OPTIMIZERS = (
    "RandomSearch",
    "ShrinkingRandomSearch",
    "GridSearch",
    "SequentialSearch",
    "SimulatedAnnealing",
    "EvolutionStrategy",
)
"""Derivative-free optimizers that accept integer and boolean tensors."""


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


class FlatSpace:
    """The parameters of some param groups as one flat torch vector on their device.

    Args:
        param_groups: torch-style parameter groups; a group's ``bounds=(lo, hi)`` applies to
            its tensors (scalars, tensors shaped like each parameter, or ``None``).
        allow_integer: accept integer and boolean tensors (their entries stay integral).
        owner: the optimizer's name, used in error messages.

    Attributes:
        flat: the :class:`~torchzero_bridge.FlatParams` layout (offsets, names, bounds parser).
        n: length of the flat vector.
        device: where the flat vectors live (the first parameter's device).
        dtype: float64, or float32 on devices without float64 (MPS).
        lo, hi: per-entry bounds (``-inf``/``inf`` where unbounded), integral for integers.
        bounded: entries with both bounds finite.
        integer: entries that belong to integer or boolean tensors.
        group_slices: ``(start, stop)`` of each param group in the flat vector.

    Raises:
        TypeError: an integer or boolean tensor when ``allow_integer`` is False.
        ValueError: malformed bounds, or bounds that contain no integer for an integer tensor.

    Example:
        >>> import torch
        >>> a = torch.zeros(2, requires_grad=True)
        >>> k = torch.zeros(1, dtype=torch.int64)
        >>> space = FlatSpace([{"params": [a, k], "bounds": (-1, 1)}], allow_integer=True, owner="doc")
        >>> space.project(torch.tensor([0.3, 2.0, 0.6], dtype=torch.float64)).tolist()
        [0.30000001192092896, 1.0, 1.0]
    """

    def __init__(self, param_groups: Iterable[dict[str, Any]], *, allow_integer: bool, owner: str) -> None:
        groups = list(param_groups)
        layout = FlatParams(groups, allow_integer=True)
        if not allow_integer and layout.has_integers:
            k = int(np.flatnonzero(layout.integer_mask)[0])
            i = int(np.searchsorted(layout.offsets, k, side="right")) - 1
            raise TypeError(
                f"{layout.name(i)}: {owner} optimizes floating-point tensors only; integer and boolean "
                f"tensors are accepted by {', '.join(INTEGER_OPTIMIZERS)}"
            )
        self.flat = layout
        self.n = layout.n
        params = layout.params
        self.device = params[0].device
        self.dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._real = [torch.view_as_real(p) if p.is_complex() else p for p in params]
        self._slices = list(zip(layout.offsets, layout.offsets[1:]))
        self.group_slices = _group_slices(groups, layout)

        bounds = layout.bounds()
        lo = np.full(self.n, -np.inf) if bounds is None else bounds[0].copy()
        hi = np.full(self.n, np.inf) if bounds is None else bounds[1].copy()
        self._round: list[int] = []  # parameters whose dtype is not the working dtype
        for i, r in enumerate(self._real):
            a, b = self._slices[i]
            if r.dtype == torch.bool:
                lo[a:b] = np.maximum(lo[a:b], 0.0)
                hi[a:b] = np.minimum(hi[a:b], 1.0)
            elif not r.is_floating_point():
                info = torch.iinfo(r.dtype)
                lo[a:b] = np.maximum(lo[a:b], float(info.min))
                hi[a:b] = np.minimum(hi[a:b], float(info.max))
            if r.dtype != self.dtype:
                self._round.append(i)
        ints = layout.integer_mask
        lo[ints] = np.ceil(lo[ints])
        hi[ints] = np.floor(hi[ints])
        empty = np.flatnonzero(lo > hi)
        if empty.size:
            raise ValueError(f"bounds: the bounds of {layout.locate(int(empty[0]))} contain no integer value")
        self.lo = torch.as_tensor(lo, dtype=self.dtype, device=self.device)
        self.hi = torch.as_tensor(hi, dtype=self.dtype, device=self.device)
        self.bounded = torch.isfinite(self.lo) & torch.isfinite(self.hi)
        self.has_bounds = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
        self.integer = torch.as_tensor(ints, device=self.device)
        self.has_integers = layout.has_integers
        # fast path: contiguous floating tensors on the working device, copied with one call
        self._fast = [
            i
            for i, r in enumerate(self._real)
            if r.is_floating_point() and r.device == self.device and r.is_contiguous()
        ]
        self._fast_dst = [self._real[i].detach().view(-1) for i in self._fast]
        self._all_fast = len(self._fast) == len(self._real)
        self._slow = [i for i in range(len(self._real)) if i not in set(self._fast)]
        self._numels = layout.numels
        self._cache: dict[tuple[str, tuple[float, ...]], torch.Tensor] = {}

    # ------------------------------------------------------------------ values
    @torch.no_grad()
    def read(self) -> torch.Tensor:
        """The current parameter values as a new flat vector."""
        if self._all_fast:
            return torch.cat(self._fast_dst).to(self.dtype)
        return torch.cat([r.detach().reshape(-1).to(device=self.device, dtype=self.dtype) for r in self._real])

    @torch.no_grad()
    def write(self, x: torch.Tensor) -> None:
        """Copy flat vector ``x`` into the parameters in place (integers rounded, booleans ``>= 0.5``)."""
        pieces = torch.split(x, self._numels)
        if self._fast:
            torch._foreach_copy_(self._fast_dst, [pieces[i] for i in self._fast])
        for i in self._slow:
            r = self._real[i]
            piece = pieces[i].reshape(r.shape)
            if r.dtype == torch.bool:
                r.copy_(piece >= 0.5)
            elif not r.is_floating_point():
                r.copy_(torch.round(piece))
            else:
                r.copy_(piece)

    @torch.no_grad()
    def project(self, X: torch.Tensor) -> torch.Tensor:
        """Clip to the bounds and round each entry the way its parameter will hold it.

        Args:
            X: a flat vector ``(n,)`` or a population ``(pop, n)``.

        Returns:
            ``X`` clipped to the bounds, integral for integer entries and exactly representable in
            each parameter's dtype (so reading back gives the same values). ``X`` itself is
            returned when nothing needs to change, otherwise a new tensor.
        """
        X = X.to(device=self.device, dtype=self.dtype)
        if self.has_bounds:
            X = torch.maximum(torch.minimum(X, self.hi), self.lo)
        elif self._round:
            X = X.clone()
        for i in self._round:
            a, b = self._slices[i]
            r = self._real[i]
            if r.is_floating_point():
                X[..., a:b] = X[..., a:b].to(r.dtype).to(self.dtype)
            else:
                X[..., a:b] = torch.round(X[..., a:b])
        return X

    def group_vector(self, groups: list[dict[str, Any]], key: str) -> torch.Tensor:
        """Per-entry value of the per-group option ``key`` (e.g. each group's ``lr``); do not modify it."""
        values = tuple(float(g[key]) for g in groups)
        cache_key = (key, values)
        out = self._cache.get(cache_key)
        if out is None:
            out = torch.empty(self.n, dtype=self.dtype, device=self.device)
            for v, (a, b) in zip(values, self.group_slices):
                out[a:b] = v
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[cache_key] = out
        return out


def _group_slices(groups: list[dict[str, Any]], layout: FlatParams) -> list[tuple[int, int]]:
    out = []
    k = 0
    for g in groups:
        count = len(list(g["params"]))
        out.append((layout.offsets[k], layout.offsets[k + count]))
        k += count
    return out


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
