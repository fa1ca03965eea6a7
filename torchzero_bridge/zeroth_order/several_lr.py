"""BestOfLRs: take an optimizer's update at several learning-rate multipliers and keep the best.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import BestOfLRs
    >>> w = torch.tensor([3.0, -2.0], requires_grad=True)
    >>> opt = BestOfLRs([w], lambda p: torch.optim.SGD(p, lr=0.1), multipliers=(0.5, 1.0, 5.0))
    >>> def closure(backward=True):
    ...     opt.zero_grad()
    ...     loss = (w ** 2).sum()
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> round(float(opt.step(closure)), 6), opt.last_multiplier, opt.nfev  # 5 x lr 0.1 lands on the minimum
    (0.0, 5.0, 4)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from torchzero_bridge.zeroth_order.estimators.base import ParamsArg
from torchzero_bridge.zeroth_order.inner import OptimizerSpec
from torchzero_bridge.zeroth_order.wrapped import InnerStepWrapper

__all__ = ["BestOfLRs"]


class BestOfLRs(InnerStepWrapper):
    """Try an inner optimizer's update at several lr multipliers per step; keep the lowest loss.

    One step: the inner optimizer steps once with the closure, from ``x0`` to ``x1``; its update
    ``u = x1 - x0`` is then tried at every multiplier ``m`` in turn, ``x0 + m·u``, each
    evaluated without backward; the parameters end at the candidate of lowest loss (the first
    one on a tie). For optimizers whose update is proportional to ``lr`` given their state
    (SGD with or without momentum, Adam, AdamW, RMSprop, Lion...), ``x0 + m·u`` is the step the
    optimizer would take with ``lr·m``.

    **Evaluations per step:** the inner optimizer's closure runs (1 for SGD/Adam, with
    backward; 2 for SPSA...) plus ``len(multipliers)`` loss-only runs. Include ``1.0`` in
    ``multipliers`` to keep the plain step among the candidates (it is evaluated again, at
    ``x0 + 1·u``, which can differ from ``x1`` in the last bit).

    **Inner state:** the inner optimizer steps once, at its own ``lr``; its state (momentum
    buffers, moments, step count) is what that step left, whichever multiplier wins. That is
    the state a step with ``lr·m`` leaves for the optimizers named above, whose state does not
    depend on ``lr``.

    With ``keep_start=True`` the start point competes with its loss from the inner step: if no
    candidate is strictly lower, the parameters stay at ``x0``. When every candidate's loss is
    non-finite the parameters stay at ``x0`` too. ``step`` returns the loss at the parameters it
    leaves.

    Args:
        params: tensors or param-group dicts; group options go to the inner optimizer.
        opt: the inner optimizer: constructed over the same tensors, a factory, a
            ``(class, kwargs)`` pair, or a gradient estimator without params.
        multipliers: the lr multipliers to try (positive, at least one).
        keep_start: let the start point win when no candidate is lower.

    Attributes:
        opt: the inner optimizer.
        nfev: closure runs so far.
        last_multiplier: the multiplier the last step kept (``0.0``: it stayed at the start).
        wins: how often each multiplier was kept, in the order of ``multipliers``.

    Raises:
        ValueError: ``multipliers`` empty or not positive; a constructed ``opt`` over other tensors.
        TypeError: no ``opt`` or one of the wrong kind; no closure at ``step``.
    """

    def __init__(
        self,
        params: ParamsArg,
        opt: OptimizerSpec,
        *,
        multipliers: Sequence[float] = (0.5, 1.0, 2.0),
        keep_start: bool = False,
    ) -> None:
        if isinstance(multipliers, (str, bytes)) or not isinstance(multipliers, Sequence):
            raise TypeError(f"BestOfLRs: multipliers expected a sequence of numbers, got {multipliers!r}")
        ms = [float(m) for m in multipliers]
        if not ms or not all(math.isfinite(m) and m > 0 for m in ms):
            raise ValueError(f"BestOfLRs: multipliers expected one or more positive numbers, got {multipliers!r}")
        if not isinstance(keep_start, bool):
            raise TypeError(f"BestOfLRs: keep_start expected True or False, got {keep_start!r}")
        self.multipliers = tuple(ms)
        self.keep_start = keep_start
        self.last_multiplier = 0.0
        self.wins = [0] * len(ms)
        super().__init__(params, opt, {})

    def _step(self, closure: Callable[..., Any]) -> float:
        x0 = self._copy()
        try:
            f0 = self._inner_step(closure)
            tensors = self._tensors()
            with torch.no_grad():
                update = [p - x for p, x in zip(tensors, x0)]
            best_f = f0 if self.keep_start and math.isfinite(f0) else math.inf
            best_k = -1
            for k, m in enumerate(self.multipliers):
                _place(tensors, x0, update, m)
                f = self._value(closure)
                if math.isfinite(f) and f < best_f:
                    best_f, best_k = f, k
            if best_k < 0:
                self._put(x0)
            elif best_k != len(self.multipliers) - 1:  # the last candidate is already in place
                _place(tensors, x0, update, self.multipliers[best_k])
        except BaseException:
            self._restore(x0)  # an error or interrupt never leaves a trial point nor its gradients
            raise
        if best_k < 0:
            self.last_multiplier = 0.0
            return f0
        self.last_multiplier = self.multipliers[best_k]
        self.wins[best_k] += 1
        return best_f

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "wins": list(self.wins), "last_multiplier": self.last_multiplier}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        wins = state.get("wins")
        if wins is not None and len(wins) != len(self.multipliers):
            raise ValueError(
                f"BestOfLRs: the state has counts for {len(wins)} multipliers, this optimizer has "
                f"{len(self.multipliers)}"
            )
        self.wins = [int(w) for w in wins] if wins is not None else [0] * len(self.multipliers)
        self.last_multiplier = float(state.get("last_multiplier", 0.0))


@torch.no_grad()
def _place(tensors: list[torch.Tensor], x0: list[torch.Tensor], update: list[torch.Tensor], m: float) -> None:
    """Write ``x0 + m * update`` into the parameters, in place."""
    for p, x, u in zip(tensors, x0, update):
        p.copy_(x).add_(u, alpha=m)
