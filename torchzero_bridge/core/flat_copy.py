"""Batched copies for models with many small parameter tensors.

Copying tensor by tensor costs about a microsecond of dispatch per tensor, whatever its size
(``torch._foreach_copy_`` runs one ``copy_`` per tensor on the CPU). With hundreds or thousands
of small tensors that cost dominates an evaluation. The two classes here replace the loop with a
few calls over all tensors:

* :class:`ElementMap` writes a flat vector into the parameters (and reads them back) with one
  numpy scatter per dtype, through an array spanning the parameters' memory and the byte
  address of every element, computed once.
* :class:`GradGather` gathers gradients with one ``torch.stack`` per group of tensors sharing
  a shape and dtype, followed by one permutation into flat order.

Example:
    >>> import numpy as np, torch
    >>> ps = [torch.zeros(2, dtype=torch.float64), torch.zeros(3, dtype=torch.float32)]
    >>> m = ElementMap.build([p.data for p in ps])
    >>> m.write(np.arange(5.0))
    >>> ps[1].tolist(), m.read().tolist()
    ([2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0])
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ElementMap", "GradGather", "owned_like", "probe_grad"]

_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _span(base: int, count: int, dtype: np.dtype) -> np.ndarray:
    """A writable numpy array of ``count`` items of ``dtype`` starting at byte address ``base``."""
    holder = type("_Span", (), {})()
    holder.__array_interface__ = {
        "shape": (count,),
        "typestr": dtype.str,
        "data": (base, False),
        "version": 3,
    }
    return np.asarray(holder)


class ElementMap:
    """Every element of a list of CPU tensors, addressed from flat positions.

    One part per dtype: ``span[index] = x[positions]`` writes all of that dtype's elements at
    once. The tensors are held, so their memory stays allocated; like any cached view of a
    parameter, the map assumes the tensors are not resized (``resize_``, ``set_``) while it is
    used.

    Attributes:
        parts: per dtype, ``(span, index, positions)``; ``positions`` is ``None`` when that
            dtype covers the flat vector in order.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]):
        self._tensors = list(tensors)  # keeps the memory the spans point into alive
        self.parts = parts
        self.n = sum(t.numel() for t in tensors)

    @classmethod
    def build(cls, tensors: Sequence[torch.Tensor]) -> ElementMap | None:
        """Map ``tensors`` (real CPU float16/32/64, any strides), or ``None`` if one does not qualify.

        Example:
            >>> ElementMap.build([torch.zeros(2, dtype=torch.int64)]) is None
            True
        """
        by_dtype: dict[torch.dtype, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        start = 0
        for t in tensors:
            np_dtype = _NUMPY_DTYPES.get(t.dtype)
            if np_dtype is None or t.device.type != "cpu" or t.is_complex() or t.requires_grad:
                return None
            size = t.element_size()
            offsets = np.zeros((), dtype=np.int64)
            for extent, stride in zip(t.shape, t.stride()):
                offsets = offsets[..., None] + np.arange(extent, dtype=np.int64) * stride
            addrs, pos = by_dtype.setdefault(t.dtype, ([], []))
            addrs.append(t.data_ptr() + offsets.reshape(-1) * size)
            pos.append(np.arange(start, start + t.numel(), dtype=np.int64))
            start += t.numel()
        parts = []
        for dtype, (addrs, pos) in by_dtype.items():
            a = np.concatenate(addrs)
            if a.size == 0:
                continue
            size = np.dtype(_NUMPY_DTYPES[dtype]).itemsize
            base = int(a.min())
            if np.any((a - base) % size):
                return None  # elements not on a common grid of this dtype: copy tensor by tensor
            index = (a - base) // size
            p = np.concatenate(pos)
            in_order = len(by_dtype) == 1 and p.size == start
            span = _span(base, int(index.max()) + 1, np.dtype(_NUMPY_DTYPES[dtype]))
            parts.append((span, index, None if in_order else p))
        return cls(tensors, parts)

    def write(self, x: np.ndarray) -> None:
        """Write flat float64 vector ``x`` into the tensors (cast to each tensor's dtype)."""
        for span, index, pos in self.parts:
            span[index] = x if pos is None else x[pos]

    def read(self) -> np.ndarray:
        """The tensors' values as a new float64 vector."""
        out = np.empty(self.n)
        for span, index, pos in self.parts:
            if pos is None:
                out[:] = span[index]
            else:
                out[pos] = span[index]
        return out


class GradGather:
    """Gathers the ``.grad`` of many parameters with one ``torch.stack`` per (shape, dtype) group.

    Built only when it saves calls: at most one group per four tensors. Gradients have their
    parameter's shape, dtype and device (torch enforces it when ``.grad`` is set), so the
    groups fixed at construction stay valid.

    Example:
        >>> ps = [torch.zeros(2, requires_grad=True) for _ in range(4)]
        >>> for i, p in enumerate(ps):
        ...     p.grad = torch.full((2,), float(i))
        >>> GradGather.build(ps).gather().tolist()
        [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    """

    def __init__(self, groups: list[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]], perm: np.ndarray | None):
        self.groups = groups
        self.perm = perm
        n = sum(dst.numel() for _, _, dst in groups)
        self._buf = torch.empty(n, dtype=torch.float64)
        self._buf_np = self._buf.numpy()
        start = 0
        for i, (members, scratch, _) in enumerate(groups):  # float64 groups stack straight into the buffer
            k = scratch.numel()
            dst = self._buf[start : start + k]
            groups[i] = (members, dst.view(scratch.shape) if scratch.dtype == torch.float64 else scratch, dst)
            start += k

    @classmethod
    def build(cls, params: Sequence[torch.Tensor]) -> GradGather | None:
        """A gatherer for real CPU floating ``params``, or ``None`` when grouping would not pay."""
        keys: dict[tuple[tuple[int, ...], torch.dtype], list[int]] = {}
        for i, p in enumerate(params):
            if p.device.type != "cpu" or p.is_complex() or not p.is_floating_point():
                return None
            keys.setdefault((tuple(p.shape), p.dtype), []).append(i)
        if len(keys) * 4 > len(params):
            return None
        sizes = [p.numel() for p in params]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        groups = []
        order: list[np.ndarray] = []
        for (shape, dtype), idx in keys.items():
            scratch = torch.empty((len(idx), *shape), dtype=dtype)
            groups.append(([params[i] for i in idx], scratch, scratch))
            order.extend(np.arange(starts[i], starts[i + 1]) for i in idx)
        src = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
        perm = np.empty_like(src)
        perm[src] = np.arange(src.size)  # flat position k comes from buffer position perm[k]
        return cls(groups, None if np.array_equal(src, np.arange(src.size)) else perm)

    def gather(self) -> np.ndarray | None:
        """The gradients as a new flat float64 vector, or ``None`` if any is missing or unusual
        (``None``, sparse): then the caller copies tensor by tensor."""
        enabled = torch.is_grad_enabled()  # toggled by hand: a no_grad context costs more than the copies
        try:  # switched inside the try: an interrupt right after switching still switches back
            if enabled:
                torch._C._set_grad_enabled(False)
            for members, scratch, dst in self.groups:
                torch.stack([p.grad for p in members], out=scratch)  # type: ignore[misc]
                if scratch.dtype != torch.float64:
                    dst.copy_(scratch.view(-1))
        except (TypeError, RuntimeError, NotImplementedError):
            return None
        finally:
            if enabled:
                torch._C._set_grad_enabled(True)
        return self._buf_np.copy() if self.perm is None else self._buf_np[self.perm]


def _ownership(t: torch.Tensor) -> tuple[int, int, int]:
    """Python references to ``t``, C++ owners of ``t``, and owners of its storage."""
    return (
        sys.getrefcount(t),
        int(t._use_count()),  # type: ignore[attr-defined]
        int(torch._C._storage_Use_Count(t.untyped_storage()._cdata)),
    )


_PROBE: list[torch.Tensor] = []


def probe_grad() -> torch.Tensor | None:
    """A gradient that only its tensor's ``.grad`` holds: what a fresh backward pass leaves."""
    if not _PROBE:
        try:
            with torch.inference_mode(False), torch.enable_grad():
                w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
                w.grad = torch.zeros(1, dtype=torch.float64)
            _PROBE.append(w)
        except Exception:  # no such tensor can be made here: gradients are always copied
            return None
    return _PROBE[0].grad


def owned_like(g: torch.Tensor, probe: torch.Tensor | None) -> bool:
    """``g`` has exactly the owners ``probe`` has (counted at the same call depth, so tracers
    and debuggers shift both alike), no weak references, and memory torch allocated."""
    if probe is None:
        return False
    try:
        return (
            _ownership(g) == _ownership(probe) and weakref.getweakrefcount(g) == 0 and g.untyped_storage().resizable()
        )
    except Exception:  # a torch without these internals: copy
        return False
