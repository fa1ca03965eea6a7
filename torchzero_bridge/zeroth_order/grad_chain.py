"""GradChain: feed each optimizer's update to the next one as its gradient.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import GradChain
    >>> w = torch.zeros(2, requires_grad=True)
    >>> chain = GradChain([w], [
    ...     lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9, nesterov=True),
    ...     (torch.optim.Adam, {"lr": 0.01}),
    ... ])
    >>> def closure():
    ...     chain.zero_grad()
    ...     loss = ((w - 1) ** 2).sum()
    ...     loss.backward()
    ...     return loss
    >>> for _ in range(300):
    ...     loss = chain.step(closure)
    >>> bool(loss < 1e-4)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from torchzero_bridge.core.param_checks import check_groups_disjoint
from torchzero_bridge.zeroth_order.estimators.base import GradientEstimator, ParamsArg
from torchzero_bridge.zeroth_order.inner import OptimizerSpec, build_optimizer, forward_groups
from torchzero_bridge.zeroth_order.state import ExtraStateMixin

__all__ = ["GradChain"]


class GradChain(ExtraStateMixin, torch.optim.Optimizer):
    """Chain optimizers: every stage but the last turns its gradient into an update, which is
    undone and handed to the next stage as that stage's gradient; the last stage applies its
    update for real.

    Stage ``i`` (not last) sees gradient ``g_i`` and moves the parameters from ``x`` to
    ``x_i``; the chain restores ``x`` and sets ``g_{i+1} = x - x_i``. So
    ``GradChain(params, [SGD(lr=1, momentum=0.9, nesterov=True), Adam(lr=1e-2)])`` is Adam on
    Nesterov-momentum gradients (up to the rounding of ``x - x_i``; keep intermediate stages
    at ``lr=1`` so that difference is the update itself).

    The first stage receives the closure: a torch optimizer calls it (with backward, as
    usual); a gradient estimator (constructed without params) or :class:`RandomGrad` uses it
    without backward, which makes the whole chain zeroth-order. A bare estimator stage (no
    ``opt``) hands its estimate on directly. Parameters whose ``.grad`` is ``None`` after a
    stage get ``None`` for the next stage too.

    Args:
        params: tensors or param-group dicts. Every stage is built over the same groups;
            extra group keys (``"lr"``...) are passed to every stage.
        optimizers: the stages, unconstructed: factories ``lambda p: torch.optim.SGD(p, lr=1)``,
            ``(class, kwargs)`` pairs, or (first stage only) an estimator without params.

    Attributes:
        stages: the constructed optimizers, in order.

    Raises:
        ValueError: no stages, or a stage that needs the closure placed after the first.
        TypeError: a stage that is not a factory, pair or unbound estimator.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import GradChain, SPSA
        >>> w = torch.zeros(3, requires_grad=True)
        >>> chain = GradChain([w], [SPSA(h=1e-3, seed=0), (torch.optim.Adam, {"lr": 0.05})])
        >>> for _ in range(300):
        ...     loss = chain.step(lambda backward=True: ((w - 1) ** 2).sum())
        >>> bool(loss < 1e-2)
        True
    """

    def __init__(self, params: ParamsArg, optimizers: Sequence[OptimizerSpec]) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError("GradChain: params expected an iterable of tensors or of param-group dicts, got a Tensor")
        if isinstance(optimizers, (str, bytes)) or not isinstance(optimizers, Sequence):
            raise TypeError(f"GradChain: optimizers expected a list of stages, got {type(optimizers).__name__}")
        if len(optimizers) == 0:
            raise ValueError("GradChain: optimizers is empty; expected at least one stage")
        super().__init__(params, {})
        check_groups_disjoint(self.param_groups)
        self.stages: list[torch.optim.Optimizer] = []
        for i, spec in enumerate(optimizers):
            groups = forward_groups(self.param_groups, ())
            stage = build_optimizer(spec, groups, owner="GradChain", what=f"optimizers[{i}]")
            if i > 0 and getattr(stage, "needs_closure", False):
                raise ValueError(
                    f"GradChain: optimizers[{i}] ({type(stage).__name__}) evaluates the closure itself, so it "
                    "can only be the first stage"
                )
            self.stages.append(stage)

    def step(self, closure: Callable[..., Any] | None = None) -> Any:  # type: ignore[override]
        """Run every stage once.

        Args:
            closure: passed to the first stage (``None``: it uses the ``.grad`` already set).

        Returns:
            What the first stage's ``step`` returned (the loss when a closure was given).
        """
        params = [p for g in self.param_groups for p in g["params"]]
        loss = None
        last = len(self.stages) - 1
        before: list[torch.Tensor] | None = None
        for i, stage in enumerate(self.stages):
            hands_on = i < last and not (isinstance(stage, GradientEstimator) and stage.opt is None)
            if hands_on:
                with torch.no_grad():
                    if before is None:
                        before = [p.detach().clone() for p in params]
                    else:
                        for b, p in zip(before, params):
                            b.copy_(p)
            out = stage.step(closure) if i == 0 and closure is not None else stage.step()
            if i == 0:
                loss = out
            if hands_on:
                assert before is not None
                _hand_on(params, before)
        return loss

    def _extra_state(self) -> dict[str, Any]:
        return {"stages": [s.state_dict() for s in self.stages]}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        stages = state.get("stages", [])
        if len(stages) != len(self.stages):
            raise ValueError(f"GradChain: the state has {len(stages)} stages, this chain has {len(self.stages)}")
        for stage, sd in zip(self.stages, stages):
            stage.load_state_dict(sd)


@torch.no_grad()
def _hand_on(params: list[torch.Tensor], before: list[torch.Tensor]) -> None:
    """Set ``p.grad = x_before - x_after`` and restore ``p = x_before`` exactly."""
    for p, x in zip(params, before):
        g = p.grad
        if g is None:
            p.copy_(x)
            continue
        if g.shape == p.shape and g.dtype == p.dtype and g.device == p.device and not g.requires_grad:
            torch.sub(x, p, out=g)
        else:
            p.grad = x - p
        p.copy_(x)
