"""MomentumToBest: an inner optimizer's step plus a pull from the current parameters toward the best point seen.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import SPSA, MomentumToBest
    >>> w = torch.zeros(3)
    >>> opt = MomentumToBest([w], SPSA(h=1e-3, seed=0, opt=lambda p: torch.optim.SGD(p, lr=0.05)), pull=0.2)
    >>> for _ in range(100):
    ...     loss = opt.step(lambda backward=True: ((w - 1) ** 2).sum())
    >>> bool(loss < 1e-2), opt.nfev  # SPSA's two evaluations per step, nothing more
    (True, 200)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from torchzero_bridge._checks import check_positive
from torchzero_bridge.core.record import warn_nonfinite
from torchzero_bridge.zeroth_order.estimators.base import ParamsArg
from torchzero_bridge.zeroth_order.inner import OptimizerSpec
from torchzero_bridge.zeroth_order.wrapped import InnerStepWrapper

__all__ = ["MomentumToBest"]


class MomentumToBest(InnerStepWrapper):
    """A momentum term that always points from the current parameters to the best-loss parameters seen.

    One step from ``x`` (loss ``f(x)``, known from the inner optimizer's closure run): if
    ``f(x)`` is the lowest loss seen so far, ``x`` becomes the best point ``b``. The inner
    optimizer then steps, and the parameters get the pull ``pull · (b - x)``::

        x ← inner_step(x) + pull · (b - x)

    Where plain momentum carries the last steps' direction, this one carries the way back to
    the best point: zero while every step improves, growing as the run wanders off. ``b`` is
    the best among the *start points* of the steps (the points whose loss the inner optimizer
    reports), so no closure run is added: evaluations per step are exactly the inner
    optimizer's (1 for SGD/Adam, 2 for SPSA). A whole :class:`~torchzero_bridge.GradChain`
    can be the inner optimizer.

    A non-finite ``f(x)``, or an inner step that makes a parameter non-finite, leaves the
    parameters at ``x`` for that step (the inner step is undone, no pull, ``.grad`` cleared)
    with a :class:`~torchzero_bridge.errors.NonFiniteLossWarning`; an error or interrupt inside
    the step leaves them at ``x`` too. ``step`` returns ``f(x)``. Memory: two
    parameter-sized buffers (``x`` and ``b``).

    Args:
        params: tensors or param-group dicts; per-group option ``pull``; other group options
            go to the inner optimizer.
        opt: the inner optimizer: constructed over the same tensors, a factory, a
            ``(class, kwargs)`` pair, or a gradient estimator without params.
        pull: the fraction of ``b - x`` added per step (positive; ``1`` jumps to ``b`` plus
            the inner step).

    Attributes:
        opt: the inner optimizer.
        nfev: closure runs so far.
        best_loss: the lowest loss seen (``inf`` before the first step).

    Raises:
        ValueError: ``pull`` not positive; a constructed ``opt`` over other tensors.
        TypeError: no ``opt`` or one of the wrong kind; no closure at ``step``.
    """

    _own = ("pull",)

    def __init__(self, params: ParamsArg, opt: OptimizerSpec, *, pull: float = 0.1) -> None:
        check_positive(pull, "pull", "MomentumToBest")
        self.best_loss = math.inf
        self._best: list[torch.Tensor] | None = None
        super().__init__(params, opt, {"pull": pull})
        for g in self.param_groups:
            check_positive(g["pull"], "pull", "MomentumToBest")

    def best_point(self) -> list[torch.Tensor] | None:
        """Copies of the best parameters seen, in param-group order (``None`` before the first step)."""
        return None if self._best is None else [b.clone() for b in self._best]

    def _step(self, closure: Callable[..., Any]) -> float:
        x0 = self._copy()
        try:
            f0 = self._inner_step(closure)
            if not math.isfinite(f0) or not self._finite():
                self._put(x0)
                for p in self._tensors():
                    p.grad = None
                warn_nonfinite(
                    f"MomentumToBest: a non-finite loss ({f0}) or update; the parameters stay where the step "
                    "started and .grad is cleared"
                )
                return f0
            if f0 < self.best_loss:
                self._best, self.best_loss = x0, f0  # x0 is a private copy: it becomes the record
                return f0  # b = x: no pull
            assert self._best is not None
            with torch.no_grad():
                k = 0
                for g in self.param_groups:
                    for p in g["params"]:
                        p.add_(self._best[k] - x0[k], alpha=g["pull"])
                        k += 1
        except BaseException:
            self._restore(x0)
            raise
        return f0

    @torch.no_grad()
    def _finite(self) -> bool:
        return bool(torch.stack([torch.isfinite(p).all() for p in self._tensors()]).all())

    def _extra_state(self) -> dict[str, Any]:
        best = None if self._best is None else [b.clone() for b in self._best]
        return {**super()._extra_state(), "best": best, "best_loss": self.best_loss}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        best = state.get("best")
        tensors = self._tensors()
        if best is not None:
            if len(best) != len(tensors) or any(b.shape != p.shape for b, p in zip(best, tensors)):
                raise ValueError("MomentumToBest: the saved best point does not match the parameters' shapes")
            best = [b.to(device=p.device, dtype=p.dtype) for b, p in zip(best, tensors)]
        self._best = best
        self.best_loss = float(state.get("best_loss", math.inf))
