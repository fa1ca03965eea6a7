"""FDM: per-coordinate finite differences.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import FDM
    >>> w = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    >>> est = FDM([w], formula="forward2", h=1e-6)
    >>> loss = est.step(lambda backward=True: (w ** 3).sum())
    >>> [round(v, 4) for v in w.grad.tolist()], est.nfev   # 3 x**2; n + 1 runs
    ([0.75, 3.0], 3)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch

from torchzero_bridge._checks import check_positive
from torchzero_bridge.zeroth_order.estimators.base import Block, GradientEstimator, ParamsArg
from torchzero_bridge.zeroth_order.estimators.formulas import Formula, get_formula
from torchzero_bridge.zeroth_order.inner import OptimizerSpec

__all__ = ["FDM"]

# two-point formulas: (position of the lower point, position of the upper point); 0 is x itself
_TWO_POINT = {"forward2": (0, 1), "backward2": (-1, 0), "central3": (-1, 1)}


class FDM(GradientEstimator):
    """Gradient by finite differences along each coordinate in turn.

    Closure runs per estimate, for ``n`` parameter entries: ``forward2``/``backward2``
    ``n + 1`` (``f(x)`` is shared), ``central3`` ``2n``, ``forward3``/``backward3``
    ``2n + 1``, ``central5`` ``4n`` (as a MinimizeWrapper ``jac``, the shared ``f(x)`` comes
    from the solver's own evaluation, so ``n``, ``2n``, ``2n``, ``4n``). Error orders:
    O(h), O(h), O(h²), O(h²), O(h²), O(h⁴).

    Loss returned: ``f(x)`` for formulas that evaluate it (``forward*``, ``backward*``),
    else the mean of the evaluations at ``x ± h`` (an O(h²) approximation of ``f(x)``).

    For the two-point formulas (``forward2``, ``backward2``, ``central3``) the quotient uses
    the step actually taken, ``(x + s) - x`` in the parameter's dtype, which removes the
    representation error of ``x + s``; the wider stencils use the nominal step.

    Args:
        params: tensors or param-group dicts (per-group option ``h``), or ``None`` for an
            unbound estimator (``jac`` of MinimizeWrapper, first stage of a GradChain).
        formula: ``"forward2"``, ``"backward2"``, ``"central3"`` (default), ``"forward3"``,
            ``"backward3"`` or ``"central5"``.
        h: the step (absolute; see ``relative``).
        relative: use ``h·max(1, |x_i|)`` with the sign of ``x_i`` (``+`` at 0) as the step of
            coordinate ``i``, scipy's rule for its default finite-difference step.
        opt: inner optimizer factory, e.g. ``lambda p: torch.optim.Adam(p, lr=1e-2)``.

    Raises:
        ValueError: unknown formula (the valid ones are listed), ``h <= 0``.
        TypeError: a non-floating parameter, ``opt`` of the wrong kind.

    Example:
        >>> import torch
        >>> import torchzero_bridge as tzb
        >>> w = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
        >>> opt = tzb.MinimizeWrapper([w], method="BFGS", jac=tzb.FDM(formula="central3", h=1e-5))
        >>> def closure(backward=True):
        ...     return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2
        >>> loss = opt.step(closure)
        >>> bool(loss < 1e-8)
        True
    """

    def __init__(
        self,
        params: ParamsArg | None = None,
        *,
        formula: str = "central3",
        h: float = 1e-3,
        relative: bool = False,
        opt: OptimizerSpec | None = None,
    ) -> None:
        self.formula: Formula = get_formula(formula, "FDM")
        if not isinstance(relative, bool):
            raise TypeError(f"FDM: relative expected True or False, got {relative!r}")
        self.relative = relative
        super().__init__(params, {"h": check_positive(h, "h", "FDM")}, opt=opt)

    def _estimate(self, f: Callable[[], float], blocks: list[Block]) -> float:
        formula = self.formula
        f0 = f() if formula.uses_center else None
        side_values: list[float] = []
        for block in blocks:
            for p, g in zip(block.params, block.grads):
                derivs = torch.empty(p.numel(), dtype=torch.float64)
                for j, elem in enumerate(_elements(p)):
                    derivs[j] = self._coordinate(f, elem, block.h, f0, side_values, p.dtype)
                g.copy_(derivs.view(g.shape))
        if f0 is not None:
            return f0
        return sum(side_values) / len(side_values) if side_values else float("nan")

    def _coordinate(
        self,
        f: Callable[[], float],
        elem: torch.Tensor,
        h: float,
        f0: float | None,
        side_values: list[float],
        dtype: torch.dtype,
    ) -> float:
        """Derivative along one entry ``elem`` (a 0-dim view into the parameter)."""
        original = elem.clone()
        x = float(original)
        step = h * (1.0 if x >= 0 else -1.0) * max(1.0, abs(x)) if self.relative else h
        formula = self.formula
        values: dict[int, float] = {}
        actual: dict[int, float] = {0: x}
        try:
            for t, _ in formula.points:
                elem.fill_(x + t * step)
                actual[t] = float(elem)
                if actual[t] == x:
                    raise ValueError(
                        f"FDM: step h={h} is too small for a {dtype} entry equal to {x}: x + h rounds to x; increase h"
                    )
                values[t] = f()
                if abs(t) == 1 and f0 is None:
                    side_values.append(values[t])
        finally:
            elem.copy_(original)
        if f0 is not None:
            values[0] = f0
        pair = _TWO_POINT.get(formula.name)
        if pair is not None:
            lo, hi = pair
            return (values[hi] - values[lo]) / (actual[hi] - actual[lo])
        total = formula.center * (f0 if f0 is not None else 0.0)
        for t, c in formula.points:
            total += c * values[t]
        return total / step


def _elements(t: torch.Tensor) -> Iterator[torch.Tensor]:
    """0-dim views of every entry of ``t`` in row-major order (writable in place)."""
    if t.is_contiguous():
        flat = t.view(-1)
        for j in range(flat.numel()):
            yield flat[j]
        return
    for idx in itertools.product(*(range(s) for s in t.shape)):
        yield t[idx]
