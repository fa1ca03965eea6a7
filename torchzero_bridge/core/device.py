"""FlatSpace: the parameters as one flat torch vector on their device, for the native optimizers.

The derivative-free searches, walks, swarms and annealing work on this vector; it stands on
the same :class:`~torchzero_bridge.core.layout.Layout` as the host vector of the scipy,
nevergrad and optuna wrappers, so offsets, kinds, bounds and rounding follow one set of rules.

Example:
    >>> import torch
    >>> w = torch.zeros(3, requires_grad=True)
    >>> FlatSpace([{"params": [w], "bounds": (0.0, 1.0)}], allow_integer=False, owner="doc").n
    3
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from torchzero_bridge.core.layout import Layout

__all__ = ["INTEGER_OPTIMIZERS", "FlatSpace"]

INTEGER_OPTIMIZERS = (
    "RandomSearch",
    "ShrinkingRandomSearch",
    "GridSearch",
    "SequentialSearch",
    "SimulatedAnnealing",
    "EvolutionStrategy",
)
"""Derivative-free optimizers that accept integer and boolean tensors."""


class FlatSpace:
    """The parameters of some param groups as one flat torch vector on their device.

    Args:
        param_groups: torch-style parameter groups; a group's ``bounds=(lo, hi)`` applies to
            its tensors (scalars, tensors shaped like each parameter, or ``None``).
        allow_integer: accept integer and boolean tensors (their entries stay integral).
        owner: the optimizer's name, used in error messages.

    Attributes:
        layout: the :class:`~torchzero_bridge.core.layout.Layout` (offsets, names, kinds, bounds).
        flat: the same layout (the name the optimizers use).
        n: length of the flat vector.
        device: where the flat vectors live (the first parameter's device).
        dtype: float64, or float32 on devices without float64 (MPS).
        lo, hi: per-entry bounds (``-inf``/``inf`` where unbounded), with the integer rules of
            :meth:`~torchzero_bridge.core.layout.Layout.integral_box`.
        bounded: entries with both bounds finite.
        integer: entries that belong to integer or boolean tensors.
        boolean: entries that belong to boolean tensors.
        group_slices: ``(start, stop)`` of each param group in the flat vector.

    Raises:
        TypeError: an integer or boolean tensor when ``allow_integer`` is False.
        ValueError: malformed bounds, or bounds that contain no integer for an integer tensor.

    Example:
        >>> a = torch.zeros(2, requires_grad=True)
        >>> k = torch.zeros(1, dtype=torch.int64)
        >>> space = FlatSpace([{"params": [a, k], "bounds": (-1, 1)}], allow_integer=True, owner="doc")
        >>> space.project(torch.tensor([0.3, 2.0, 0.6], dtype=torch.float64)).tolist()
        [0.30000001192092896, 1.0, 1.0]
    """

    def __init__(self, param_groups: Iterable[dict[str, Any]], *, allow_integer: bool, owner: str) -> None:
        layout = Layout(list(param_groups), allow_integer=True)
        if not allow_integer and layout.has_integers:
            k = int(np.flatnonzero(layout.integer_mask)[0])
            i = int(np.searchsorted(layout.offsets, k, side="right")) - 1
            raise TypeError(
                f"{layout.name(i)}: {owner} optimizes floating-point tensors only; integer and boolean "
                f"tensors are accepted by {', '.join(INTEGER_OPTIMIZERS)}"
            )
        self.layout = layout
        self.flat = layout
        self.n = layout.n
        self.device = layout.params[0].device
        self.dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._real = layout.real
        self._slices = layout.spans
        self.group_slices = layout.group_slices

        lo, hi = layout.integral_box()
        self.lo = torch.as_tensor(lo, dtype=self.dtype, device=self.device)
        self.hi = torch.as_tensor(hi, dtype=self.dtype, device=self.device)
        self.bounded = torch.isfinite(self.lo) & torch.isfinite(self.hi)
        self.has_bounds = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
        self.integer = torch.as_tensor(layout.integer_mask.copy(), device=self.device)
        self.boolean = torch.as_tensor(layout.bool_mask.copy(), device=self.device)
        self.has_integers = layout.has_integers
        self._round = [i for i, r in enumerate(self._real) if r.dtype != self.dtype]  # not the working dtype
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
