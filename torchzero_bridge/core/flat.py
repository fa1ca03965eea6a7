"""FlatParams: the float64 host vector that scipy, nevergrad and optuna see.

Solvers see a single contiguous float64 vector laid out by a
:class:`~torchzero_bridge.core.layout.Layout`. The model keeps its own tensors, dtypes
and devices. This module converts between the two with one copy per exchange:
reads concatenate into a reused buffer, writes copy in place into each parameter's
existing storage (``copy_``), so views the user holds stay valid.

Complex tensors appear as (real, imaginary) pairs; integer and boolean tensors appear as
floats that are rounded on the way back (only when a solver allows integers).

Example:
    >>> import torch
    >>> from torchzero_bridge.core.flat import FlatParams
    >>> w = torch.zeros(2, 3, dtype=torch.float32, requires_grad=True)
    >>> b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    >>> flat = FlatParams([{"params": [w, b]}])
    >>> flat.n
    9
    >>> flat.write(flat.read() + 1.0)
    >>> float(w.sum())
    6.0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from torchzero_bridge.core.flat_copy import ElementMap, GradGather, owned_like, probe_grad
from torchzero_bridge.core.groups import BoundsLike, signature
from torchzero_bridge.core.layout import Layout, is_integer_dtype

__all__ = ["BoundsLike", "FlatParams"]

_LARGE = 1 << 16  # from this many entries, copies go straight between x and the tensors
_PIECE = 1 << 16  # entries per piece when a large write also keeps a copy (fits in a core's L2)
_MANY = 4  # from this many tensors averaging at most _SMALL entries, copies are batched over all tensors
_SMALL = 256


class FlatParams:
    """The float64 host vector of some parameter groups: read, write in place, gradients.

    Args:
        param_groups: a :class:`~torchzero_bridge.core.layout.Layout`, or what builds one:
            torch-style parameter groups, or a plain iterable of tensors (one group).
        allow_integer: accept integer and boolean tensors (for solvers that optimize
            integers); otherwise they are rejected with an error naming the tensor. Only used
            when ``param_groups`` is not a layout already.

    Attributes:
        layout: the :class:`~torchzero_bridge.core.layout.Layout` (offsets, kinds, bounds).
        params: the parameter tensors, in flat order.
        n: length of the flat vector.
        offsets: start of each parameter's slice in the flat vector.
        integer_mask: boolean array marking entries that belong to integer/bool tensors.
        eps: machine epsilon of the least precise floating parameter dtype.
        version: counts writes.
        name, locate, bounds, round_integers: the layout's methods of those names.

    Raises:
        ValueError: empty parameter list, non-leaf tensor, a tensor given twice.
        TypeError: a non-tensor entry, or an integer tensor when ``allow_integer`` is False.
    """

    def __init__(
        self,
        param_groups: Layout | Iterable[Mapping[str, Any]] | Iterable[torch.Tensor],
        *,
        allow_integer: bool = False,
    ) -> None:
        layout = param_groups if isinstance(param_groups, Layout) else Layout(param_groups, allow_integer=allow_integer)
        self.layout = layout
        self.groups = layout.groups
        self.params = layout.params
        self._real = layout.real
        self.shapes = layout.shapes
        self.numels = layout.numels
        self.offsets = layout.offsets
        self.n = layout.n
        self.integer_mask = layout.integer_mask
        self.has_integers = layout.has_integers
        self.eps = layout.eps
        self.name = layout.name
        self.locate = layout.locate
        self.bounds = layout.bounds
        self.round_integers = layout.round_integers

        self._buf = torch.empty(self.n, dtype=torch.float64)
        self._buf_np: np.ndarray = self._buf.numpy()
        self._views = [self._buf[a:b].view(s) for (a, b), s in zip(layout.spans, self.shapes)]

        fast_dst: list[torch.Tensor] = []
        fast_src: list[torch.Tensor] = []
        self._slow: list[int] = []  # indices copied one by one (integers, other devices)
        for i, r in enumerate(self._real):
            if layout.kinds[i] != "float" or r.device.type != "cpu":
                self._slow.append(i)
            else:
                fast_dst.append(r)
                fast_src.append(self._views[i])
        self._fast_params = fast_dst
        self._fast_data = [r.data for r in fast_dst]  # aliases whose writes skip version bumps
        self._fast_views = fast_src
        self.version = 0
        # float64 CPU parameters: numpy views of their storage take silent writes directly from x
        # (the layout has checked that no two tensors share memory)
        np_ok = not self._slow and all(
            r.dtype == torch.float64 and r.device.type == "cpu" and r.is_contiguous() for r in self._real
        )
        self._np_targets = (
            [(r.data.numpy().reshape(-1), a, b) for r, (a, b) in zip(self._real, layout.spans)] if np_ok else None
        )
        self._spans = layout.spans
        self._flat_data = [r.data.view(-1) for r in self._real] if self._np_targets is not None else []
        self._plain = not self._slow and not any(p.is_complex() for p in self.params)
        self._grad_buf = torch.empty(self.n, dtype=torch.float64)
        self._grad_np: np.ndarray = self._grad_buf.numpy()
        self._grad_views = [self._grad_buf[a:b].view(s) for (a, b), s in zip(layout.spans, self.shapes)]
        # one large float64 CPU tensor: its gradients can be handed over without a copy
        self._take_ok = len(self.params) == 1 and self._np_targets is not None and self.n >= _LARGE
        # many small tensors: one scatter per dtype for writes, one stack per shape for gradients
        many = len(self.params) >= _MANY and not self._slow and self.n <= _SMALL * len(self.params)
        self._elements = ElementMap.build([r.data for r in self._real]) if many else None
        self._gather = GradGather.build(self._real) if self._plain and many else None

    @classmethod
    def cached(cls, owner: Any, param_groups: Sequence[Mapping[str, Any]], *, allow_integer: bool) -> FlatParams:
        """``owner``'s host vector of ``param_groups``: built once, rebuilt when the tensors or group options change."""
        key = signature(param_groups)
        held = owner.__dict__.get("_flat_cache")
        if held is not None and held[0] == key:
            return held[1]
        flat = cls(param_groups, allow_integer=allow_integer)
        owner.__dict__["_flat_cache"] = (key, flat)
        return flat

    # ------------------------------------------------------------------ values
    def read(self) -> np.ndarray:
        """Return the current parameter values as a new float64 vector."""
        if self._elements is not None:
            return self._elements.read()
        if self._fast_params:
            torch._foreach_copy_(self._fast_views, self._fast_data)
        for i in self._slow:
            self._views[i].copy_(self._real[i].detach())
        return self._buf_np.copy()

    def write(self, x: np.ndarray, *, silent: bool = False) -> None:
        """Copy flat vector ``x`` into the parameters in place (integers are rounded).

        Every write increments :attr:`version`. Silent writes (the trial points of a solve)
        leave the tensors' autograd version counters alone, so a graph recorded at an
        earlier point stays usable once that point is written back (exact Hessian-vector
        products at a remembered point after evaluating elsewhere), and float64 CPU tensors
        are written straight from ``x`` through numpy views. The final write of an answer is
        not silent, so the version counters record that the step changed the tensors.
        """
        self.version += 1
        if silent and self._elements is not None:
            self._elements.write(x)
            return
        if silent and self._np_targets is not None:
            if self._threaded_copies() and _torch_readable(x):
                xt = torch.from_numpy(x)  # torch copies large vectors on all its threads
                torch._foreach_copy_(self._flat_data, [xt[a:b] for a, b in self._spans])
                return
            for arr, a, b in self._np_targets:  # one copy per tensor, no intermediate buffer
                np.copyto(arr, x[a:b], casting="unsafe")
            return
        if self.n >= _LARGE and not self._slow and _torch_readable(x):
            xt = torch.from_numpy(x)  # big vectors: copy straight from x, skipping the buffer
            views = [xt[a:b].view(s) for a, b, s in zip(self.offsets, self.offsets[1:], self.shapes)]
        else:
            if x is not self._buf_np:
                np.copyto(self._buf_np, x, casting="unsafe")
            views = self._fast_views
        if silent:
            if self._fast_params:
                torch._foreach_copy_(self._fast_data, views)
            for i in self._slow:
                self._copy_slow(self._real[i].data, self._views[i])
            return
        enabled = torch.is_grad_enabled()
        try:  # switched inside the try: an interrupt right after switching still switches back
            if enabled:
                torch._C._set_grad_enabled(False)
            if self._fast_params:
                torch._foreach_copy_(self._fast_params, views)
            for i in self._slow:
                self._copy_slow(self._real[i], self._views[i])
        finally:
            if enabled:
                torch._C._set_grad_enabled(True)

    def write_keeping(self, x: np.ndarray, keep: np.ndarray, *, silent: bool = False) -> None:
        """:meth:`write` ``x`` and leave a copy of it in ``keep`` (the same length).

        For large vectors, when ``silent`` and every tensor is float64 on the CPU,
        the parameters hold ``x`` exactly, so the copy is taken from them right after the
        write, while they are still in cache: piece by piece with one torch thread, tensor by
        tensor with torch's threads when there are several. Otherwise ``x`` is copied into
        ``keep`` first and written from there.

        Example:
            >>> w = torch.zeros(3, dtype=torch.float64)
            >>> keep = np.empty(3)
            >>> FlatParams([w]).write_keeping(np.array([1.0, 2.0, 3.0]), keep)
            >>> keep.tolist(), w.tolist()
            ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        """
        targets = self._np_targets
        if silent and targets is not None and self.n >= _LARGE and self._elements is None:
            if self._threaded_copies() and keep.dtype == np.float64 and keep.flags.c_contiguous:
                self.write(x, silent=True)
                kt = torch.from_numpy(keep)
                torch._foreach_copy_([kt[a:b] for a, b in self._spans], self._flat_data)
                return
            self.version += 1
            for arr, a, b in targets:  # piece by piece, so the second copy reads from cache
                for s in range(0, b - a, _PIECE):
                    e = min(s + _PIECE, b - a)
                    piece = arr[s:e]
                    np.copyto(piece, x[a + s : a + e], casting="unsafe")
                    np.copyto(keep[a + s : a + e], piece)
            return
        np.copyto(keep, x, casting="unsafe")
        self.write(keep, silent=silent)

    def _threaded_copies(self) -> bool:
        """Whether copies of the whole vector go through torch, which splits them over its threads.

        Only for large vectors, and only when torch has several threads (numpy's copy uses one).
        """
        return self.n >= _LARGE and torch.get_num_threads() > 1

    @staticmethod
    def _copy_slow(r: torch.Tensor, v: torch.Tensor) -> None:
        if r.dtype == torch.bool:
            r.copy_(v >= 0.5)
        elif is_integer_dtype(r.dtype):
            r.copy_(torch.round(v))
        else:
            r.copy_(v)

    # ------------------------------------------------------------------ gradients
    def grads(self) -> list[torch.Tensor | None]:
        """Current ``.grad`` of every parameter (real views for complex ones)."""
        out: list[torch.Tensor | None] = []
        for p in self.params:
            g = p.grad
            out.append(None if g is None else (torch.view_as_real(g) if g.is_complex() else g))
        return out

    @torch.no_grad()
    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> np.ndarray:
        """Concatenate per-parameter tensors (``None`` = zeros) into a new float64 vector.

        Complex tensors are taken as (real, imaginary) pairs.
        """
        out_np = np.empty(self.n)
        out = torch.from_numpy(out_np)
        dst: list[torch.Tensor] = []
        src: list[torch.Tensor] = []
        for i, t in enumerate(tensors):
            view = out[self.offsets[i] : self.offsets[i + 1]].view(self.shapes[i])
            if t is None:
                view.zero_()
                continue
            if t.is_complex():
                t = torch.view_as_real(t)
            if t.device.type == "cpu" and t.shape == view.shape:
                dst.append(view)
                src.append(t)
            else:
                view.copy_(t.reshape(view.shape))
        if dst:
            torch._foreach_copy_(dst, src)
        return out_np

    def grad(self) -> np.ndarray:
        """Flat float64 copy of the parameters' gradients (missing gradients are zeros)."""
        g = self.grad_if_any()
        return np.zeros(self.n) if g is None else g

    def grad_if_any(self) -> np.ndarray | None:
        """Like :meth:`grad`, but ``None`` when no parameter has a gradient at all."""
        if self._gather is not None:
            g = self._gather.gather()
            if g is not None:
                return g
        gs = [p.grad for p in self.params]
        if self._plain and not _any_none(gs):  # every tensor a real CPU float: one foreach copy
            if self.n < _LARGE:
                torch._foreach_copy_(self._grad_views, gs)  # type: ignore[arg-type]
                return self._grad_np.copy()
            out_np = np.empty(self.n)  # numpy's allocator reuses big blocks; torch.empty page-faults anew
            out = torch.from_numpy(out_np)
            views = [out[a:b].view(s) for a, b, s in zip(self.offsets, self.offsets[1:], self.shapes)]
            torch._foreach_copy_(views, gs)  # type: ignore[arg-type]
            return out_np
        if all(g is None for g in gs):
            return None
        return self.flatten(self.grads())

    def take_grad(self, held: Sequence[np.ndarray | None] = ()) -> np.ndarray | None:
        """Like :meth:`grad_if_any`, but may hand over the gradient's own storage.

        For a single contiguous float64 CPU parameter of at least ``2**16`` entries whose
        gradient nothing else references (the fresh tensor a backward pass leaves in
        ``p.grad``), the result is a numpy view of that gradient and ``p.grad`` is set to
        ``None``, so the next backward pass allocates a new tensor instead of writing into the
        returned array. That saves a full copy of the vector per gradient. A gradient anything
        else can still reach (a buffer the closure reuses, another tensor's ``.grad``, a view,
        an autograd graph, a weak reference, memory borrowed from numpy), or one sharing memory
        with an array in ``held``, is copied as usual.

        Args:
            held: gradients returned earlier that are still in use.

        Example:
            >>> w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
            >>> (w.sum() * 2).backward()
            >>> FlatParams([w]).take_grad().tolist()
            [2.0, 2.0, 2.0]
        """
        if self._take_ok:
            p = self.params[0]
            g = p.grad
            probe = probe_grad()
            if (
                g is not None
                and g.dtype == torch.float64
                and g.device.type == "cpu"
                and g.is_contiguous()
                and not g.requires_grad
                and g.shape == p.shape
                and not g.is_conj()
                and not g.is_neg()
                and owned_like(g, probe)
            ):
                arr = g.detach().numpy().reshape(-1)
                if not any(h is not None and np.may_share_memory(arr, h) for h in held):
                    p.grad = None
                    return arr
        return self.grad_if_any()

    @torch.no_grad()
    def set_grad(self, g: np.ndarray) -> None:
        """Write flat gradient ``g`` into every parameter's ``.grad``."""
        for p, t in zip(self.params, self.unflatten(g, like_params=True)):
            if is_integer_dtype(p.dtype):
                continue
            if p.grad is None:
                p.grad = t.clone()
            else:
                p.grad.copy_(t)

    def clear_grad(self) -> None:
        """Set every parameter's ``.grad`` to ``None``."""
        for p in self.params:
            p.grad = None

    def unflatten(self, v: np.ndarray | torch.Tensor, *, like_params: bool = False) -> list[torch.Tensor]:
        """Split flat ``v`` into tensors with each parameter's (real) shape, dtype and device.

        Args:
            v: a flat vector of length ``n``.
            like_params: give complex parameters complex tensors (instead of real pairs).
        """
        vt = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) if isinstance(v, np.ndarray) else v
        out = []
        for i, r in enumerate(self._real):
            piece = vt[self.offsets[i] : self.offsets[i + 1]].view(self.shapes[i])
            dtype = r.dtype if r.is_floating_point() else torch.float64
            piece = piece.to(device=r.device, dtype=dtype)
            if like_params and self.params[i].is_complex():
                piece = torch.view_as_complex(piece.contiguous())
            out.append(piece)
        return out


def _torch_readable(x: np.ndarray) -> bool:
    """Whether ``torch.from_numpy`` can wrap ``x`` as float64 without a copy or a warning."""
    return x.dtype == np.float64 and x.flags.c_contiguous and x.flags.writeable


def _any_none(items: list[Any]) -> bool:
    # `None in items` would call Tensor.__eq__ on every element; identity checks are cheap
    for item in items:
        if item is None:
            return True
    return False
