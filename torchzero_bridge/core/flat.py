"""FlatParams: the one place that knows how parameters are laid out in a flat vector.

Solvers see a single contiguous float64 vector. The model keeps its own tensors, dtypes
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

import itertools
import sys
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from torchzero_bridge.core.flat_copy import ElementMap, GradGather
from torchzero_bridge.core.param_checks import check_no_overlap

__all__ = ["BoundsLike", "FlatParams"]

BoundsLike = Any  # None | number | Tensor | sequence of those (one per tensor in the group)

_LARGE = 1 << 16  # from this many entries, copies go straight between x and the tensors
_PIECE = 1 << 16  # entries per piece when a large write also keeps a copy (fits in a core's L2)
_MANY = 4  # from this many tensors averaging at most _SMALL entries, copies are batched over all tensors
_SMALL = 256

_INTEGER_DTYPES = (
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
)


def _is_integer(t: torch.Tensor) -> bool:
    return t.dtype in _INTEGER_DTYPES


class FlatParams:
    """Maps a list of parameter groups to one float64 vector and back.

    Args:
        param_groups: torch-style parameter groups (dicts with a ``"params"`` list), or
            a plain iterable of tensors (treated as one group).
        allow_integer: accept integer and boolean tensors (for solvers that optimize
            integers); otherwise they are rejected with an error naming the tensor.

    Attributes:
        params: the parameter tensors, in flat order.
        n: length of the flat vector.
        offsets: start of each parameter's slice in the flat vector.
        integer_mask: boolean array marking entries that belong to integer/bool tensors.
        eps: machine epsilon of the least precise floating parameter dtype.

    Raises:
        ValueError: empty parameter list, non-leaf tensor, a tensor given twice.
        TypeError: a non-tensor entry, or an integer tensor when ``allow_integer`` is False.
    """

    def __init__(
        self,
        param_groups: Iterable[Mapping[str, Any]] | Iterable[torch.Tensor],
        *,
        allow_integer: bool = False,
    ) -> None:
        groups = _as_groups(param_groups)
        self.groups: list[Mapping[str, Any]] = groups
        self.params: list[torch.Tensor] = []
        self._names: list[str] = []
        self._group_of: list[int] = []
        seen: dict[int, str] = {}
        for gi, group in enumerate(groups):
            names = group.get("param_names")
            for j, p in enumerate(group["params"]):
                name = names[j] if names is not None and j < len(names) else None
                label = _label(gi, j, p, name)
                if not isinstance(p, torch.Tensor):
                    raise TypeError(f"{label}: expected a torch.Tensor, got {type(p).__name__}")
                if not p.is_leaf:
                    raise ValueError(
                        f"{label} is not a leaf tensor (it was computed from other tensors); "
                        "pass leaf parameters such as model.parameters()"
                    )
                if id(p) in seen:
                    raise ValueError(f"{label} is the same tensor as {seen[id(p)]}; pass each tensor once")
                if _is_integer(p) and not allow_integer:
                    raise TypeError(
                        f"{label} has integer dtype {p.dtype}; this solver optimizes floating-point "
                        "tensors only (differential evolution, nevergrad and optuna accept integers)"
                    )
                seen[id(p)] = label
                self.params.append(p)
                self._names.append(label)
                self._group_of.append(gi)
        if not self.params:
            raise ValueError("params is empty: expected at least one tensor to optimize")
        check_no_overlap(self.params, self._names)

        # real views: complex tensors become (..., 2) real tensors sharing storage
        self._real = [torch.view_as_real(p) if p.is_complex() else p for p in self.params]
        self.shapes = [tuple(r.shape) for r in self._real]
        self.numels = [r.numel() for r in self._real]
        self.offsets = [0]
        for k in self.numels:
            self.offsets.append(self.offsets[-1] + k)
        self.n = self.offsets[-1]

        self._buf = torch.empty(self.n, dtype=torch.float64)
        self._buf_np: np.ndarray = self._buf.numpy()
        self._views = [self._buf[a:b].view(s) for a, b, s in zip(self.offsets, self.offsets[1:], self.shapes)]

        self.integer_mask = np.zeros(self.n, dtype=bool)
        fast_dst: list[torch.Tensor] = []
        fast_src: list[torch.Tensor] = []
        self._slow: list[int] = []  # indices copied one by one (integers, other devices)
        for i, r in enumerate(self._real):
            if _is_integer(r):
                self.integer_mask[self.offsets[i] : self.offsets[i + 1]] = True
                self._slow.append(i)
            elif r.device.type != "cpu":
                self._slow.append(i)
            else:
                fast_dst.append(r)
                fast_src.append(self._views[i])
        self._fast_params = fast_dst
        self._fast_data = [r.data for r in fast_dst]  # aliases whose writes skip version bumps
        self._fast_views = fast_src
        self.version = 0
        self.silent = False
        # float64 CPU parameters: numpy views of their storage take silent writes directly from x
        np_ok = not self._slow and all(
            r.dtype == torch.float64 and r.device.type == "cpu" and r.is_contiguous() for r in self._real
        )
        self._np_targets = (
            [(r.data.numpy().reshape(-1), a, b) for r, a, b in zip(self._real, self.offsets, self.offsets[1:])]
            if np_ok
            else None
        )
        self._targets_disjoint = self._np_targets is not None and _disjoint([t[0] for t in self._np_targets])
        self._spans = list(zip(self.offsets, self.offsets[1:]))
        self._flat_data = [r.data.view(-1) for r in self._real] if self._np_targets is not None else []
        self._plain = not self._slow and not any(p.is_complex() for p in self.params)
        self._grad_buf = torch.empty(self.n, dtype=torch.float64)
        self._grad_np: np.ndarray = self._grad_buf.numpy()
        self._grad_views = [self._grad_buf[a:b].view(s) for a, b, s in zip(self.offsets, self.offsets[1:], self.shapes)]
        self.has_integers = bool(self.integer_mask.any())
        # one large float64 CPU tensor: its gradients can be handed over without a copy
        self._take_ok = len(self.params) == 1 and self._np_targets is not None and self.n >= _LARGE
        floats = [r.dtype for r in self._real if r.is_floating_point()]
        self.eps = max((torch.finfo(d).eps for d in floats), default=float(np.finfo(np.float64).eps))
        self.is_float64_only = all(r.dtype == torch.float64 for r in self._real)
        # many small tensors: one scatter per dtype for writes, one stack per shape for gradients
        many = len(self.params) >= _MANY and not self._slow and self.n <= _SMALL * len(self.params)
        self._elements = ElementMap.build([r.data for r in self._real]) if many else None
        self._gather = GradGather.build(self._real) if self._plain and many else None

    # ------------------------------------------------------------------ naming
    def name(self, i: int) -> str:
        """Human-readable label of parameter ``i`` (used in error messages)."""
        return self._names[i]

    def locate(self, k: int) -> str:
        """Name the parameter and element that flat index ``k`` belongs to."""
        i = int(np.searchsorted(self.offsets, k, side="right")) - 1
        idx = np.unravel_index(k - self.offsets[i], self.shapes[i]) if self.shapes[i] else ()
        return f"{self._names[i]}[{', '.join(str(int(v)) for v in idx)}]"

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

    def write(self, x: np.ndarray) -> None:
        """Copy flat vector ``x`` into the parameters in place (integers are rounded).

        Every write increments :attr:`version`. While :attr:`silent` is set (during a solve),
        writes leave the tensors' autograd version counters alone, so a graph recorded at an
        earlier point stays usable once that point is written back (exact Hessian-vector
        products at a remembered point after evaluating elsewhere), and float64 CPU tensors
        are written straight from ``x`` through numpy views. The final write of an answer is
        not silent, so the version counters record that the step changed the tensors.
        """
        self.version += 1
        if self.silent and self._elements is not None:
            self._elements.write(x)
            return
        if self.silent and self._np_targets is not None:
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
        if self.silent:
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

    def write_keeping(self, x: np.ndarray, keep: np.ndarray) -> None:
        """:meth:`write` ``x`` and leave a copy of it in ``keep`` (the same length).

        For large vectors, while :attr:`silent` is set and every tensor is float64 on the CPU,
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
        if (
            self.silent
            and targets is not None
            and self._targets_disjoint
            and self.n >= _LARGE
            and self._elements is None
        ):
            if self._threaded_copies() and keep.dtype == np.float64 and keep.flags.c_contiguous:
                self.write(x)
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
        self.write(keep)

    def _threaded_copies(self) -> bool:
        """Whether copies of the whole vector go through torch, which splits them over its threads.

        Only for large vectors, and only when torch has several threads (numpy's copy uses one).
        """
        return self.n >= _LARGE and torch.get_num_threads() > 1

    @staticmethod
    def _copy_slow(r: torch.Tensor, v: torch.Tensor) -> None:
        if r.dtype == torch.bool:
            r.copy_(v >= 0.5)
        elif _is_integer(r):
            r.copy_(torch.round(v))
        else:
            r.copy_(v)

    def round_integers(self, x: np.ndarray) -> np.ndarray:
        """Return ``x`` with integer entries rounded the way ``write`` rounds them.

        ``x`` is one flat vector or a population with one flat vector per row.
        """
        if not self.has_integers:
            return x
        x = np.array(x, dtype=np.float64, copy=True)
        for i in self._slow:
            r = self._real[i]
            sl = slice(self.offsets[i], self.offsets[i + 1])
            if r.dtype == torch.bool:
                x[..., sl] = (x[..., sl] >= 0.5).astype(np.float64)
            elif _is_integer(r):
                x[..., sl] = np.round(x[..., sl])
        return x

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
            probe = _probe_grad()
            if (
                g is not None
                and g.dtype == torch.float64
                and g.device.type == "cpu"
                and g.is_contiguous()
                and not g.requires_grad
                and g.shape == p.shape
                and not g.is_conj()
                and not g.is_neg()
                and _owned_like(g, probe)
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
            if _is_integer(p):
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

    # ------------------------------------------------------------------ bounds
    def bounds(self, flat_bounds: Any = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Build ``(lower, upper)`` float64 vectors from flat or per-group bounds.

        Args:
            flat_bounds: scipy-style bounds over the flat vector: a ``scipy.optimize.Bounds``
                or a sequence of ``n`` ``(lo, hi)`` pairs (``None`` = unbounded). When given,
                per-group ``bounds`` must be absent.

        Returns:
            ``None`` when nothing is bounded, else ``(lo, hi)`` with ``-inf``/``inf`` for
            unbounded entries.

        Raises:
            ValueError: wrong length or shape, ``lo > hi``, NaN bounds, or both kinds given.
        """
        lo = np.full(self.n, -np.inf)
        hi = np.full(self.n, np.inf)
        group_given = any(g.get("bounds") is not None for g in self.groups)
        if flat_bounds is not None:
            if group_given:
                raise ValueError("bounds: give either flat scipy-style bounds or per-group bounds, not both")
            lo, hi = _flat_bounds(flat_bounds, self.n)
        elif group_given:
            for gi, group in enumerate(self.groups):
                gb = group.get("bounds")
                if gb is None:
                    continue
                if not (isinstance(gb, (tuple, list)) and len(gb) == 2):
                    raise ValueError(f"param_groups[{gi}]['bounds']: expected a (lo, hi) pair, got {type(gb).__name__}")
                members = [i for i, g in enumerate(self._group_of) if g == gi]
                for side, arr in ((0, lo), (1, hi)):
                    spec = gb[side]
                    per = _per_param(spec, len(members), gi, side)
                    for i, s in zip(members, per):
                        if s is None:
                            continue
                        arr[self.offsets[i] : self.offsets[i + 1]] = self._expand(s, i, gi, side)
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise ValueError("bounds: NaN is not a valid bound; use None or +/-inf for unbounded")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"bounds: lower bound {lo[k]} is above upper bound {hi[k]} for {self.locate(k)}")
        if np.isneginf(lo).all() and np.isposinf(hi).all():
            return None
        return lo, hi

    def _expand(self, spec: Any, i: int, gi: int, side: int) -> np.ndarray:
        which = "lo" if side == 0 else "hi"
        shape = self.shapes[i]
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return np.full(self.numels[i], float(spec))
        if isinstance(spec, torch.Tensor):
            t = spec.detach()
            if t.is_complex():
                t = torch.view_as_real(t)
            arr = t.to(device="cpu", dtype=torch.float64).numpy()
        else:
            arr = np.asarray(spec, dtype=np.float64)
        pshape = tuple(self.params[i].shape)
        try:
            if self.params[i].is_complex() and arr.shape != shape:
                arr = np.broadcast_to(arr[..., None], (*pshape, 2)) if arr.ndim else np.broadcast_to(arr, shape)
            out = np.broadcast_to(arr, shape)
        except ValueError:
            raise ValueError(
                f"param_groups[{gi}]['bounds'] {which} for {self._names[i]}: shape {arr.shape} "
                f"does not broadcast to the parameter's shape {pshape}"
            ) from None
        return out.reshape(-1)


def _ownership(t: torch.Tensor) -> tuple[int, int, int]:
    """Python references to ``t``, C++ owners of ``t``, and owners of its storage."""
    return (
        sys.getrefcount(t),
        int(t._use_count()),  # type: ignore[attr-defined]
        int(torch._C._storage_Use_Count(t.untyped_storage()._cdata)),
    )


_PROBE: list[torch.Tensor] = []


def _probe_grad() -> torch.Tensor | None:
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


def _owned_like(g: torch.Tensor, probe: torch.Tensor | None) -> bool:
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


def _torch_readable(x: np.ndarray) -> bool:
    """Whether ``torch.from_numpy`` can wrap ``x`` as float64 without a copy or a warning."""
    return x.dtype == np.float64 and x.flags.c_contiguous and x.flags.writeable


def _disjoint(arrays: list[np.ndarray]) -> bool:
    """No two of these contiguous arrays share memory."""
    spans = sorted((a.__array_interface__["data"][0], a.nbytes) for a in arrays)
    return all(start + size <= nxt for (start, size), (nxt, _) in itertools.pairwise(spans))


def _any_none(items: list[Any]) -> bool:
    # `None in items` would call Tensor.__eq__ on every element; identity checks are cheap
    for item in items:
        if item is None:
            return True
    return False


def _flat_bounds(spec: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse scipy-style flat bounds into two vectors of length ``n``."""
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


def _per_param(spec: Any, count: int, gi: int, side: int) -> list[Any]:
    """One bound spec per tensor of a group: a shared spec, or a list with one per tensor."""
    if isinstance(spec, (list, tuple)) and count > 1:
        if len(spec) != count:
            which = "lo" if side == 0 else "hi"
            raise ValueError(
                f"param_groups[{gi}]['bounds'] {which}: expected a scalar, a tensor, or a list of "
                f"{count} entries (one per tensor in the group), got a list of {len(spec)}"
            )
        return list(spec)
    return [spec] * count


def _as_groups(param_groups: Any) -> list[Mapping[str, Any]]:
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


def _label(gi: int, j: int, p: Any, name: str | None) -> str:
    where = f"'{name}'" if name else f"param_groups[{gi}]['params'][{j}]"
    if isinstance(p, torch.Tensor):
        return f"{where} (shape {tuple(p.shape)}, {p.dtype})"
    return where
