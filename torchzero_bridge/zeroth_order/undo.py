"""UndoOnRise: re-evaluate after any optimizer's step and undo it (or step the other way) when the loss rose.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import UndoOnRise
    >>> w = torch.tensor([2.0, -1.0], requires_grad=True)
    >>> opt = UndoOnRise([w], lambda p: torch.optim.SGD(p, lr=1.2))
    >>> def closure(backward=True):
    ...     opt.zero_grad()
    ...     loss = (w ** 2).sum()
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> [round(float(opt.step(closure)), 6) for _ in range(3)]  # lr=1.2 overshoots: undone, lr halved
    [5.0, 0.2, 0.008]
    >>> opt.n_undone, opt.nfev
    (1, 6)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from torchzero_bridge._checks import check_positive
from torchzero_bridge.zeroth_order.estimators.base import ParamsArg
from torchzero_bridge.zeroth_order.inner import OptimizerSpec
from torchzero_bridge.zeroth_order.wrapped import InnerStepWrapper, no_worse

__all__ = ["UndoOnRise"]


class UndoOnRise(InnerStepWrapper):
    """Step an inner optimizer, evaluate the new point, and undo the step when the loss rose.

    One step: the inner optimizer steps with the closure (so its loss ``f0`` at the start point
    ``x0`` is known); the wrapper evaluates ``f1`` at the new point ``x1`` (no backward). If
    ``f1 <= f0`` the step stands. Otherwise (a rise, or a non-finite ``f1``):

    * ``on_rise="undo"``: the parameters go back to ``x0`` exactly;
    * ``on_rise="opposite"``: the parameters move to ``2·x0 - x1`` and ``f2`` is evaluated
      there; the opposite step stands when ``f2 <= f0``, else the parameters go back to ``x0``.

    So on a deterministic objective a step never ends above ``f0``. Closure runs per step: the
    inner optimizer's (1 for SGD/Adam, 2 for SPSA...) plus 1, plus 1 more for each rise with
    ``"opposite"``. ``step`` returns the loss at the parameters it leaves (``f1``, ``f2`` or
    ``f0``), not torch's usual loss before the step. After ``step``, ``.grad`` is what the
    last closure run left (a standard closure's ``zero_grad`` clears it on the loss-only run).

    **What is rolled back.** An undone step restores the parameters bit for bit. The inner
    optimizer's state (momentum buffers, Adam moments, step counts, and its param groups) is
    restored to its value before the step only with ``restore_state=True`` (a deep copy of the
    inner ``state_dict`` is taken before every step); by default it keeps what the rejected
    step taught it. An opposite step that stands keeps the inner state its own step left.

    **Learning rate.** On a deterministic objective an undone step leaves the parameters where
    they were, and many optimizers would then propose the same step again: plain SGD always,
    Adam too (its normalized step ``m/sqrt(v)`` does not change under a repeated gradient), and
    any optimizer with ``restore_state=True``. Hence ``shrink`` (default ``0.5``): every inner
    param group's ``lr`` is multiplied by it after each step that did not stand (undone or
    opposite), after any restore, and by ``grow`` (default ``1``, no change) after each step
    that stood. ``shrink=1`` turns this off (for noisy objectives, where rises are common and
    the lr would otherwise only fall).

    Args:
        params: tensors or param-group dicts; group options go to the inner optimizer.
        opt: the inner optimizer: constructed over the same tensors, a factory
            (``lambda p: torch.optim.Adam(p, lr=1e-2)``), a ``(class, kwargs)`` pair, or a gradient
            estimator without params (``SPSA(h=1e-3, opt=...)``-style zeroth-order steps).
        on_rise: ``"undo"`` or ``"opposite"``.
        restore_state: restore the inner optimizer's state on an undone step.
        shrink: factor in ``(0, 1]`` applied to the inner ``lr`` after a step that did not stand.
        grow: factor ``>= 1`` applied to the inner ``lr`` after a step that stood.

    Attributes:
        opt: the inner optimizer.
        nfev: closure runs so far.
        n_undone: steps undone (parameters back at the step's start).
        n_opposite: steps replaced by the opposite step.

    Raises:
        ValueError: unknown ``on_rise``, ``shrink`` outside ``(0, 1]``, ``grow < 1``, a constructed ``opt``
            over other tensors.
        TypeError: no ``opt`` or one of the wrong kind; no closure at ``step``.
    """

    def __init__(
        self,
        params: ParamsArg,
        opt: OptimizerSpec,
        *,
        on_rise: Literal["undo", "opposite"] = "undo",
        restore_state: bool = False,
        shrink: float = 0.5,
        grow: float = 1.0,
    ) -> None:
        if on_rise not in ("undo", "opposite"):
            raise ValueError(f"UndoOnRise: on_rise expected 'undo' or 'opposite', got {on_rise!r}")
        if not isinstance(restore_state, bool):
            raise TypeError(f"UndoOnRise: restore_state expected True or False, got {restore_state!r}")
        check_positive(shrink, "shrink", "UndoOnRise")
        if shrink > 1:
            raise ValueError(f"UndoOnRise: shrink expected a factor in (0, 1], got {shrink!r}")
        check_positive(grow, "grow", "UndoOnRise")
        if grow < 1:
            raise ValueError(f"UndoOnRise: grow expected a factor >= 1, got {grow!r}")
        self.on_rise = on_rise
        self.restore_state = restore_state
        self.shrink = float(shrink)
        self.grow = float(grow)
        self.n_undone = 0
        self.n_opposite = 0
        super().__init__(params, opt, {})

    def _step(self, closure: Callable[..., Any]) -> float:
        x0 = self._copy()
        saved = self._inner_state() if self.restore_state else None
        try:
            f0 = self._inner_step(closure)
            f1 = self._value(closure)
            if no_worse(f0, f1):
                self._scale_lr(self.grow)
                return f1
            if self.on_rise == "opposite":
                with torch.no_grad():
                    for p, x in zip(self._tensors(), x0):
                        p.mul_(-1).add_(x, alpha=2)  # 2·x0 - x1
                f2 = self._value(closure)
                if no_worse(f0, f2):
                    self.n_opposite += 1
                    self._scale_lr(self.shrink)
                    return f2
            self._put(x0)
            if saved is not None:
                self.opt.load_state_dict(saved)
            self.n_undone += 1
            self._scale_lr(self.shrink)
            return f0
        except BaseException:
            self._restore(x0)  # an error or interrupt never leaves a trial point nor its gradients
            if saved is not None:
                self.opt.load_state_dict(saved)
            raise

    def _scale_lr(self, factor: float) -> None:
        if factor != 1.0:
            for g in self.opt.param_groups:
                if "lr" in g:
                    g["lr"] = g["lr"] * factor

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "n_undone": self.n_undone, "n_opposite": self.n_opposite}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.n_undone = int(state.get("n_undone", 0))
        self.n_opposite = int(state.get("n_opposite", 0))
