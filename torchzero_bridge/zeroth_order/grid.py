"""GridSearch: exhaustive search of a grid inside bounds, refined around the best point.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import GridSearch
    >>> b = torch.zeros(2, dtype=torch.bool)
    >>> opt = GridSearch([b], batch_size=4)  # booleans: the grid {0, 1} needs no bounds or step
    >>> loss = opt.step(lambda: float((b.double() - torch.tensor([0.0, 1.0])).abs().sum()))
    >>> b.tolist(), float(loss)
    ([False, True], 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from torchzero_bridge._checks import check_int, check_positive
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.core.layout import kind_of
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer

__all__ = ["GridSearch"]


class GridSearch(DerivativeFreeOptimizer):
    """Exhaustive search of a grid inside per-group bounds, refined around the best point.

    The first grid holds, for every entry, the values ``lo, lo + step, lo + 2 step, ... <= hi``
    (integers: a step of at least 1); points are visited in ``itertools.product`` order (the
    last entry varies fastest), ``batch_size`` per step. Once the grid is exhausted the step
    is divided by ``refine`` and a new grid of ``2 * refine + 1`` values per entry spanning
    ``best +- old step`` is visited, and so on, until the step is below the parameters'
    resolution. With ``refine=None`` the search stops after the first grid (later steps
    only return the best point).

    Boolean tensors are searched over ``{0, 1}``: a group holding only booleans needs neither
    ``bounds`` nor ``step``, and a boolean entry always steps by 1.

    Args:
        params: iterable of tensors or of param-group dicts.
        bounds: per-group ``(lo, hi)``, required and finite for every entry (booleans: ``[0, 1]``).
        step: per-group grid spacing (booleans: 1).
        batch_size: grid points evaluated per step (in one call with a ``BatchObjective``).
        refine: refinement factor (an int >= 2) or ``None``.
        max_points: grids with more points than this are refused when the optimizer is built.

    Raises:
        ValueError: missing or infinite bounds, non-positive ``step``, a grid (or refined grid)
            with more than ``max_points`` points.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import GridSearch
        >>> w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        >>> opt = GridSearch([w], bounds=(0.0, 1.0), step=0.25)
        >>> opt.grid_size
        5
    """

    allow_integer: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        bounds: Any = None,
        step: float | None = None,
        *,
        batch_size: int = 1,
        refine: int | None = 2,
        max_points: int = 10**7,
    ) -> None:
        self.batch_size = check_int(batch_size, "batch_size", type(self).__name__)
        if refine is not None:
            check_int(refine, "refine", type(self).__name__, minimum=2)
        self.refine = refine
        self.max_points = check_int(max_points, "max_points", type(self).__name__)
        super().__init__(params, {"bounds": bounds, "step": step}, seed=0)
        space = self._space()
        if not bool(space.bounded.all()):
            k = int(torch.nonzero(~space.bounded)[0])
            raise ValueError(
                f"bounds: GridSearch needs finite bounds=(lo, hi) for every entry; {space.flat.locate(k)} has none"
            )
        values = self._axes(space, space.lo, self._steps(space), None)
        self.grid_size = math.prod(len(v) for v in values)
        self._check_size(self.grid_size, "the grid", space)
        if refine is not None:
            self._check_size((2 * refine + 1) ** space.n, "a refined grid", space)

    def _check_size(self, count: int, what: str, space: FlatSpace) -> None:
        if count > self.max_points:
            digits = int(math.log10(count)) if count > 0 else 0
            raise ValueError(
                f"GridSearch: {what} has about 1e{digits} points over {space.n} entries, more than "
                f"max_points={self.max_points}; use a coarser step, narrower bounds, fewer parameters"
                + (", refine=None" if what != "the grid" else "")
                + " or a larger max_points"
            )

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        only_bools = all(kind_of(p.dtype) == "bool" for p in group["params"])  # their grid is {0, 1}
        if group.get("step") is None:
            if only_bools:
                return
            raise ValueError(f"step ({where}): GridSearch needs a grid spacing, e.g. step=0.1")
        check_positive(group["step"], f"step ({where})", type(self).__name__)
        if group.get("bounds") is None and not only_bools:
            raise ValueError(f"bounds ({where}): GridSearch needs finite bounds=(lo, hi) for every group")

    @property
    def exhausted(self) -> bool:
        """True when the search is over (grid done and no refinement left); see also ``converged``."""
        return bool(self._dfo_state().get("done", False))

    def _steps(self, space: FlatSpace) -> torch.Tensor:
        steps, _ = space.layout.group_values("step", self.param_groups)  # 1.0 where a group has none
        h = torch.as_tensor(steps, dtype=space.dtype, device=space.device)
        h = torch.where(space.integer, torch.clamp(torch.round(h), min=1.0), h)
        return torch.where(space.boolean, torch.ones_like(h), h)  # every boolean entry visits both 0 and 1

    def _axes(
        self, space: FlatSpace, start: torch.Tensor, h: torch.Tensor, center: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Grid values of each entry: from ``start`` by ``h`` up to ``hi``, or ``center +- k h``."""
        axes = []
        lo, hi = space.lo.tolist(), space.hi.tolist()
        for k in range(space.n):
            if center is None:
                count = math.floor((hi[k] - lo[k]) / float(h[k]) + 1e-9) + 1
                v = start[k] + h[k] * torch.arange(count, dtype=space.dtype, device=space.device)
            else:
                r = self.refine or 0
                v = center[k] + h[k] * torch.arange(-r, r + 1, dtype=space.dtype, device=space.device)
            v = space.project(_one_entry(v, k, space.n)).select(1, k)
            axes.append(torch.unique(v))
        return axes

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        if "grid_step" not in st:
            st.update(grid_step=self._steps(space), center=None, cursor=0, level=0, done=False)
        if st["done"]:
            self._mark_converged(st, "the grid was searched to the parameters' resolution")
            return
        axes = self._axes(space, space.lo, st["grid_step"], st["center"])
        sizes = [len(a) for a in axes]
        total = math.prod(sizes)
        if st["cursor"] >= total:
            if self.refine is None or not self._refine(space, st):
                st["done"] = True
                self._mark_converged(st, "every grid point was evaluated" if self.refine is None else "no finer grid")
                return
            axes = self._axes(space, space.lo, st["grid_step"], st["center"])
            sizes = [len(a) for a in axes]
            total = math.prod(sizes)
        stop = min(st["cursor"] + self.batch_size, total)
        X = _grid_points(axes, sizes, st["cursor"], stop, space)
        st["cursor"] = stop
        self._evaluate_many(space, space.project(X))

    def _refine(self, space: FlatSpace, st: dict[str, Any]) -> bool:
        h = st["grid_step"] / self.refine
        h = torch.where(space.integer, torch.clamp(torch.round(h), min=1.0), h)
        best = st["best_x"]
        resolution = torch.clamp(best.abs(), min=1.0) * torch.finfo(space.dtype).eps * 16
        movable = torch.where(space.integer, h < st["grid_step"], h > resolution)
        if not bool(movable.any()):
            return False
        st.update(grid_step=h, center=best.clone(), cursor=0, level=st["level"] + 1)
        return True

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        h = st.get("grid_step")
        if h is not None and h.numel() != space.n:
            raise ValueError(f"state_dict: the saved grid has {h.numel()} entries but the parameters have {space.n}")


def _one_entry(v: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """Rows of zeros with column ``k`` set to ``v`` (lets ``project`` clip and round one entry)."""
    X = torch.zeros((v.numel(), n), dtype=v.dtype, device=v.device)
    X[:, k] = v
    return X


def _grid_points(axes: list[torch.Tensor], sizes: list[int], start: int, stop: int, space: FlatSpace) -> torch.Tensor:
    """Grid points ``start..stop-1`` in ``itertools.product`` order (mixed-radix digits)."""
    idx = torch.arange(start, stop, device=space.device)
    X = torch.empty((stop - start, space.n), dtype=space.dtype, device=space.device)
    for k in range(space.n - 1, -1, -1):
        X[:, k] = axes[k][idx % sizes[k]]
        idx = idx // sizes[k]
    return X
