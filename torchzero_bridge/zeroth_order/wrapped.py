"""The common shape of optimizers that wrap one inner torch optimizer and judge its step by the loss.

:class:`InnerStepWrapper` builds the inner optimizer from an optimizer spec (see
:mod:`~torchzero_bridge.zeroth_order.inner`), hands it a counting copy of the closure, and gives
subclasses what they need to try points and go back: copies of the parameters, in-place
restores, loss-only evaluations and the inner optimizer's state. Subclasses implement
:meth:`InnerStepWrapper._step`.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.wrapped import counting_closure
    >>> calls = [0]
    >>> c = counting_closure(lambda backward=True: torch.tensor(2.0), calls)
    >>> float(c(backward=False)), calls[0]
    (2.0, 1)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from torchzero_bridge.core.closure import ClosureAdapter, loss_to_float, require_closure
from torchzero_bridge.core.frozen import SkipsFrozen
from torchzero_bridge.core.param_checks import check_added_group, check_groups_disjoint, require_floating
from torchzero_bridge.core.state import StatefulOptimizer
from torchzero_bridge.zeroth_order.estimators.base import ParamsArg
from torchzero_bridge.zeroth_order.inner import OptimizerSpec, build_optimizer, check_spec, forward_groups
from torchzero_bridge.zeroth_order.space import put_back

__all__ = ["InnerStepWrapper", "counting_closure"]


def counting_closure(closure: Callable[..., Any], calls: list[int]) -> Callable[..., Any]:
    """``closure`` with the same ``backward`` convention, adding one to ``calls[0]`` per run."""

    def count(_loss: Any) -> None:
        calls[0] += 1

    return ClosureAdapter(closure).observed(count)


class InnerStepWrapper(StatefulOptimizer, SkipsFrozen, torch.optim.Optimizer):
    """Base of the wrappers around an inner optimizer (not public API).

    Args:
        params: tensors or param-group dicts; group options other than the wrapper's own go
            to the inner optimizer.
        opt: the inner optimizer spec (required): constructed over the same tensors, a factory,
            a ``(class, kwargs)`` pair, or an unbound gradient estimator. It is stepped with the
            closure, so optimizers that evaluate it themselves (``torch.optim.LBFGS``, SPSA...)
            work too.
        defaults: the wrapper's own per-group options.

    Attributes:
        opt: the inner optimizer.
        nfev: closure runs so far, the inner optimizer's included.
    """

    needs_closure: ClassVar[bool] = True
    _own: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: ParamsArg, opt: OptimizerSpec, defaults: dict[str, Any]) -> None:
        name = type(self).__name__
        if isinstance(params, torch.Tensor):
            raise TypeError(f"{name}: params expected an iterable of tensors or of param-group dicts, got a Tensor")
        if opt is None:
            raise TypeError(f"{name}: opt is required (e.g. `lambda p: torch.optim.Adam(p, lr=1e-2)`)")
        check_spec(opt, owner=name, what="opt", allow_estimator=True)
        self.nfev = 0
        super().__init__(params, defaults)
        check_groups_disjoint(self.param_groups)
        groups = forward_groups(self.param_groups, self._own)
        self.opt: torch.optim.Optimizer = build_optimizer(opt, groups, owner=name, what="opt", closure_ok=True)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``; the inner optimizer gets the group (less the wrapper's options)."""
        given = param_group.get("params", [])
        params = [given] if isinstance(given, torch.Tensor) else list(given)
        require_floating({"params": params}, len(self.param_groups), type(self).__name__, "inner optimizers")
        super().add_param_group({**param_group, "params": params})
        if getattr(self, "opt", None) is None:  # during __init__: the inner optimizer is built afterwards
            return
        check_added_group(self)
        self.opt.add_param_group(forward_groups([self.param_groups[-1]], self._own)[0])

    def step(self, closure: Callable[..., Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One wrapped step (see the class docstring); returns the loss at the parameters it leaves.

        Raises:
            TypeError: no closure, or the inner optimizer's ``step`` returned no loss.
        """
        calls = [0]
        counted = counting_closure(require_closure(closure, type(self).__name__), calls)
        try:
            loss = self._step(counted)
        finally:
            self.nfev += calls[0]
        return torch.tensor(loss, dtype=torch.float64)

    # ------------------------------------------------------------------ for subclasses
    def _step(self, closure: Callable[..., Any]) -> float:
        raise NotImplementedError

    def _tensors(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def _copy(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self._tensors()]

    @torch.no_grad()
    def _put(self, xs: list[torch.Tensor]) -> None:
        for p, x in zip(self._tensors(), xs):
            p.copy_(x)

    def _restore(self, x0: list[torch.Tensor]) -> None:
        """Back to the step's start with ``.grad`` cleared; a KeyboardInterrupt in the middle redoes it.

        The error path of every wrapper: gradients from a trial point would not match the start,
        and a second interrupt landing in the copy must not leave half the tensors behind.
        """
        put_back(self._tensors(), lambda: self._put(x0))

    def _inner_step(self, closure: Callable[..., Any]) -> float:
        """Step the inner optimizer with the closure; its loss at the start point as a float."""
        out = self.opt.step(closure)
        if out is None:
            raise TypeError(
                f"{type(self).__name__}: the inner {type(self.opt).__name__}.step(closure) returned no loss; "
                "the closure must return the loss"
            )
        return loss_to_float(out)

    @staticmethod
    def _value(closure: Callable[..., Any]) -> float:
        """Loss only at the current parameters (no backward when the closure accepts ``backward``)."""
        return ClosureAdapter(closure).value()

    def _inner_state(self) -> dict[str, Any]:
        return copy.deepcopy(self.opt.state_dict())

    def _extra_state(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict(), "nfev": self.nfev}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])
        self.nfev = int(state.get("nfev", self.nfev))


def no_worse(f0: float, f1: float) -> bool:
    """Whether a loss ``f1`` is acceptable after ``f0``: finite and not above a finite ``f0``.

    Example:
        >>> no_worse(1.0, 1.0), no_worse(1.0, 1.5), no_worse(float("nan"), 3.0), no_worse(1.0, float("nan"))
        (True, False, True, False)
    """
    return math.isfinite(f1) and (not math.isfinite(f0) or f1 <= f0)
