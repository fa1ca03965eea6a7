"""Layout: where every parameter entry sits in the flat vector, what kind it is, and its bounds.

One :class:`Layout` is built per optimizer (and rebuilt only when the tensors change) and
every exchange path stands on it: the float64 host vector of the scipy, nevergrad and optuna
wrappers (:class:`~torchzero_bridge.core.flat.FlatParams`) and the device vector of the
native optimizers (:class:`~torchzero_bridge.core.device.FlatSpace`). It is the one place
that knows offsets, the kinds of entries (float, int, bool; complex tensors are floats as
(real, imaginary) pairs), the param-group slices, how bounds are read (per-group or
scipy-style flat bounds, plus the integer and boolean rules), how integers are rounded and
how a start point is clipped into the bounds.

Example:
    >>> import torch
    >>> w = torch.zeros(2, 3, requires_grad=True)
    >>> k = torch.zeros(2, dtype=torch.int64)
    >>> layout = Layout([{"params": [w, k], "bounds": (-1.5, 1.5)}], allow_integer=True)
    >>> layout.n, layout.offsets, layout.kinds
    (8, [0, 6, 8], ['float', 'int'])
    >>> layout.integral_box()[1].tolist()
    [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.0, 1.0]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.groups import as_groups, expand_bound, label_of, parse_flat_bounds, per_param
from torchzero_bridge.core.param_checks import check_no_overlap

__all__ = ["Layout", "is_integer_dtype", "kind_of"]

_KIND_CODES = {"float": 0, "int": 1, "bool": 2}

Box = tuple[np.ndarray, np.ndarray]


def kind_of(dtype: torch.dtype) -> str:
    """How entries of ``dtype`` are optimized: ``"float"`` (floating and complex), ``"bool"`` or ``"int"``.

    Example:
        >>> kind_of(torch.bool), kind_of(torch.complex64), kind_of(torch.uint8)
        ('bool', 'float', 'int')
    """
    if dtype == torch.bool:
        return "bool"
    return "float" if dtype.is_floating_point or dtype.is_complex else "int"


def is_integer_dtype(dtype: torch.dtype) -> bool:
    """Whether entries of ``dtype`` are optimized as integers (integer and boolean dtypes).

    Example:
        >>> is_integer_dtype(torch.bool), is_integer_dtype(torch.float16)
        (True, False)
    """
    return kind_of(dtype) != "float"


class Layout:
    """The flat layout of some parameter groups.

    Args:
        param_groups: torch-style parameter groups (dicts with a ``"params"`` list), or
            a plain iterable of tensors (treated as one group).
        allow_integer: accept integer and boolean tensors (for solvers that optimize
            integers); otherwise they are rejected with an error naming the tensor.

    Attributes:
        groups: the groups (each with its ``params`` as a list).
        params: the tensors, in flat order.
        real: the tensors as real tensors (complex ones viewed as ``(..., 2)`` pairs).
        shapes, numels: each real tensor's shape and size.
        offsets: start of each tensor's slice (``n`` appended at the end).
        n: length of the flat vector.
        kinds: per tensor, ``"float"``, ``"int"`` or ``"bool"``.
        kind_codes: per entry, 0 (float), 1 (int) or 2 (bool), as ``int8``.
        integer_mask, bool_mask, float_mask: per entry; integer includes boolean.
        has_integers: some entry is an integer or boolean.
        group_slices: ``(start, stop)`` of each group.
        eps: machine epsilon of the least precise floating dtype (float64's if none).

    Raises:
        ValueError: empty parameter list, non-leaf tensor, a tensor given twice, overlapping memory.
        TypeError: a non-tensor entry, or an integer tensor when ``allow_integer`` is False.
    """

    def __init__(
        self, param_groups: Iterable[Mapping[str, Any]] | Iterable[torch.Tensor], *, allow_integer: bool = False
    ) -> None:
        self.groups: list[Mapping[str, Any]] = as_groups(param_groups)
        self.params: list[torch.Tensor] = []
        self._names: list[str] = []
        counts: list[int] = []
        seen: dict[int, str] = {}
        for gi, group in enumerate(self.groups):
            names = group.get("param_names")
            counts.append(len(group["params"]))
            for j, p in enumerate(group["params"]):
                label = label_of(gi, j, p, names[j] if names is not None and j < len(names) else None)
                if not isinstance(p, torch.Tensor):
                    raise TypeError(f"{label}: expected a torch.Tensor, got {type(p).__name__}")
                if not p.is_leaf:
                    raise ValueError(
                        f"{label} is not a leaf tensor (it was computed from other tensors); "
                        "pass leaf parameters such as model.parameters()"
                    )
                if id(p) in seen:
                    raise ValueError(f"{label} is the same tensor as {seen[id(p)]}; pass each tensor once")
                if is_integer_dtype(p.dtype) and not allow_integer:
                    raise TypeError(
                        f"{label} has integer dtype {p.dtype}; this solver optimizes floating-point "
                        "tensors only (differential evolution, nevergrad and optuna accept integers)"
                    )
                seen[id(p)] = label
                self.params.append(p)
                self._names.append(label)
        if not self.params:
            raise ValueError("params is empty: expected at least one tensor to optimize")
        check_no_overlap(self.params, self._names)

        self.real = [torch.view_as_real(p) if p.is_complex() else p for p in self.params]
        self.shapes = [tuple(r.shape) for r in self.real]
        self.numels = [r.numel() for r in self.real]
        self.offsets = [0]
        for k in self.numels:
            self.offsets.append(self.offsets[-1] + k)
        self.n = self.offsets[-1]
        self.spans = list(zip(self.offsets, self.offsets[1:]))
        self._group_of = [gi for gi, c in enumerate(counts) for _ in range(c)]
        firsts = [0, *itertools.accumulate(counts)]  # index of each group's first tensor
        self.group_slices = [(self.offsets[a], self.offsets[b]) for a, b in itertools.pairwise(firsts)]

        self.kinds = [kind_of(p.dtype) for p in self.params]
        self.kind_codes = np.zeros(self.n, dtype=np.int8)
        for kind, (a, b) in zip(self.kinds, self.spans):
            self.kind_codes[a:b] = _KIND_CODES[kind]
        self.integer_mask = self.kind_codes > 0
        self.bool_mask = self.kind_codes == 2
        self.float_mask = ~self.integer_mask
        for m in (self.kind_codes, self.integer_mask, self.bool_mask, self.float_mask):
            m.flags.writeable = False  # shared by every caller: copy before changing
        self.has_integers = bool(self.integer_mask.any())
        self._rounded = [i for i, kind in enumerate(self.kinds) if kind != "float"]
        floats = [r.dtype for r in self.real if r.is_floating_point()]
        self.eps = max((torch.finfo(d).eps for d in floats), default=float(np.finfo(np.float64).eps))

    # ------------------------------------------------------------------ naming
    def name(self, i: int) -> str:
        """Human-readable label of tensor ``i`` (used in error messages)."""
        return self._names[i]

    def locate(self, k: int) -> str:
        """Name the tensor and element that flat index ``k`` belongs to.

        Example:
            >>> print(Layout([torch.zeros(2), torch.zeros(2, 2)]).locate(4))
            param_groups[0]['params'][1] (shape (2, 2), torch.float32)[1, 0]
        """
        i = int(np.searchsorted(self.offsets, k, side="right")) - 1
        idx = np.unravel_index(k - self.offsets[i], self.shapes[i]) if self.shapes[i] else ()
        return f"{self._names[i]}[{', '.join(str(int(v)) for v in idx)}]"

    # ------------------------------------------------------------------ per-group values
    def group_values(
        self, key: str, groups: Sequence[Mapping[str, Any]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-entry float value of the group option ``key``, and where a group gave one (not ``None``).

        Args:
            key: the option's name (e.g. ``"sigma"``).
            groups: the groups to read (default: :attr:`groups`), one per layout group.

        Example:
            >>> a, b = torch.zeros(1), torch.zeros(2)
            >>> v, given = Layout([{"params": [a], "sigma": 0.5}, {"params": [b]}]).group_values("sigma")
            >>> v.tolist(), given.tolist()
            ([0.5, 1.0, 1.0], [True, False, False])
        """
        values = np.ones(self.n)
        given = np.zeros(self.n, dtype=bool)
        for group, (a, b) in zip(self.groups if groups is None else groups, self.group_slices):
            if group.get(key) is not None:
                values[a:b] = float(group[key])
                given[a:b] = True
        return values, given

    # ------------------------------------------------------------------ rounding
    def round_integers(self, x: np.ndarray) -> np.ndarray:
        """Return ``x`` with integer entries rounded the way the parameters hold them.

        Integers round half to even; booleans are ``x >= 0.5``. ``x`` is one flat vector or a
        population with one flat vector per row; it is returned itself when nothing is rounded.
        """
        if not self.has_integers:
            return x
        x = np.array(x, dtype=np.float64, copy=True)
        for i in self._rounded:
            a, b = self.spans[i]
            if self.kinds[i] == "bool":
                x[..., a:b] = (x[..., a:b] >= 0.5).astype(np.float64)
            else:
                x[..., a:b] = np.round(x[..., a:b])
        return x

    # ------------------------------------------------------------------ bounds
    def bounds(self, flat_bounds: Any = None) -> Box | None:
        """The user's bounds as ``(lower, upper)`` float64 vectors (new arrays).

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
            lo, hi = parse_flat_bounds(flat_bounds, self.n)
        elif group_given:
            for gi, group in enumerate(self.groups):
                gb = group.get("bounds")
                if gb is None:
                    continue
                if not (isinstance(gb, (tuple, list)) and len(gb) == 2):
                    raise ValueError(f"param_groups[{gi}]['bounds']: expected a (lo, hi) pair, got {type(gb).__name__}")
                members = [i for i, g in enumerate(self._group_of) if g == gi]
                for side, arr in ((0, lo), (1, hi)):
                    for i, s in zip(members, per_param(gb[side], len(members), gi, side)):
                        if s is not None:
                            where = f"param_groups[{gi}]['bounds'] {'lo' if side == 0 else 'hi'} for {self._names[i]}"
                            arr[self.offsets[i] : self.offsets[i + 1]] = expand_bound(s, self.params[i], where)
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise ValueError("bounds: NaN is not a valid bound; use None or +/-inf for unbounded")
        self._check_order(lo, hi, "bounds")
        if np.isneginf(lo).all() and np.isposinf(hi).all():
            return None
        return lo, hi

    def flat_box(self, spec: Any, where: str) -> Box:
        """Parse scipy-style flat bounds given under option ``where`` (errors start with ``where``).

        Example:
            >>> Layout([torch.zeros(2)]).flat_box([(0, 1), (None, 2)], "bounds")[0].tolist()
            [0.0, -inf]
        """
        try:
            lo, hi = parse_flat_bounds(spec, self.n)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from None
        self._check_order(lo, hi, where)
        return lo, hi

    def require_box(self, flat_bounds: Any, solver: str, *, finite: bool = True, bool_default: bool = False) -> Box:
        """The search box of a solver that needs one.

        Args:
            flat_bounds: scipy-style bounds over the flat vector, or ``None`` (per-group bounds).
            solver: the solver's name, for messages.
            finite: every entry must have finite bounds (else only *some* bounds must be given).
            bool_default: boolean tensors without bounds get ``[0, 1]``.

        Raises:
            ValueError: no bounds at all, or (with ``finite``) an entry without finite bounds; the
                message names the tensor and element. Also the errors of :meth:`bounds`.

        Example:
            >>> layout = Layout([torch.zeros(1, dtype=torch.bool)], allow_integer=True)
            >>> layout.require_box(None, "DE", bool_default=True)[1].tolist()
            [1.0]
        """
        box = self.bounds(flat_bounds)
        lo, hi = (np.full(self.n, -np.inf), np.full(self.n, np.inf)) if box is None else box
        if bool_default:
            free = self.bool_mask & np.isneginf(lo) & np.isposinf(hi)
            lo[free], hi[free] = 0.0, 1.0
        missing = ~(np.isfinite(lo) & np.isfinite(hi)) if finite else np.isneginf(lo) & np.isposinf(hi)
        if missing.any() and (finite or missing.all()):
            k = int(np.flatnonzero(missing)[0])
            need = "finite bounds for every entry" if finite else "bounds"
            raise ValueError(
                f"{solver} needs {need}; {self.locate(k)} has none (lo={lo[k]}, hi={hi[k]}). Give the param "
                "group bounds=(lo, hi) (scalars or tensors shaped like its parameters) or flat scipy-style "
                "bounds in the solver's options"
            )
        return lo, hi

    def integral_box(self, box: Box | None = None) -> Box:
        """Bounds with the integer rules: booleans within ``[0, 1]``, integers within their dtype's
        range, and both ends of an integer entry integral (new arrays).

        Args:
            box: the bounds to start from (default: :meth:`bounds`, unbounded where ``None``).

        Raises:
            ValueError: the bounds of an integer entry contain no integer.
        """
        if box is None:
            box = self.bounds()
        lo = np.full(self.n, -np.inf) if box is None else np.array(box[0], dtype=np.float64)
        hi = np.full(self.n, np.inf) if box is None else np.array(box[1], dtype=np.float64)
        for i in self._rounded:
            a, b = self.spans[i]
            if self.kinds[i] == "bool":
                low, high = 0.0, 1.0
            else:
                info = torch.iinfo(self.params[i].dtype)
                low, high = float(info.min), float(info.max)
            lo[a:b] = np.ceil(np.maximum(lo[a:b], low))
            hi[a:b] = np.floor(np.minimum(hi[a:b], high))
        empty = np.flatnonzero(lo > hi)
        if empty.size:
            raise ValueError(f"bounds: the bounds of {self.locate(int(empty[0]))} contain no integer value")
        return lo, hi

    def clip_start(
        self,
        x0: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        *,
        then: str = "it was clipped into the bounds",
    ) -> np.ndarray:
        """Return ``x0`` clipped into ``[lo, hi]``, warning (naming the first entry) when it was outside.

        Args:
            x0: the start point.
            lo, hi: the bounds (``-inf``/``inf`` = none).
            then: the end of the warning, saying what the solver does with the clipped point.

        Example:
            >>> import numpy as np
            >>> Layout([torch.zeros(2)]).clip_start(np.zeros(2), np.full(2, -1.0), np.ones(2)).tolist()
            [0.0, 0.0]
        """
        outside = (x0 < lo) | (x0 > hi)
        if not outside.any():
            return x0
        k = int(np.flatnonzero(outside)[0])
        warn_user(
            f"the starting point is outside the bounds at {int(outside.sum())} entries "
            f"(first: {self.locate(k)}); {then}"
        )
        return np.clip(x0, lo, hi)

    def _check_order(self, lo: np.ndarray, hi: np.ndarray, where: str) -> None:
        bad = np.flatnonzero(~(lo <= hi))
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"{where}: lower bound {lo[k]} is above upper bound {hi[k]} for {self.locate(k)}")
