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

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from torchzero_bridge.core.frozen import SkipsFrozen
from torchzero_bridge.core.param_checks import check_groups_disjoint, require_floating
from torchzero_bridge.core.record import warn_nonfinite
from torchzero_bridge.core.state import StatefulOptimizer
from torchzero_bridge.zeroth_order.dfo_base import warn_ignored
from torchzero_bridge.zeroth_order.estimators.base import GradientEstimator, ParamsArg
from torchzero_bridge.zeroth_order.inner import (
    OptimizerSpec,
    build_optimizer,
    forward_groups,
    is_constructed,
    needs_closure,
)

__all__ = ["GradChain"]


class GradChain(StatefulOptimizer, SkipsFrozen, torch.optim.Optimizer):
    """Chain optimizers: every stage but the last turns its gradient into an update, which is
    undone and handed to the next stage as that stage's gradient; the last stage applies its
    update for real.

    Stage ``i`` (not last) sees gradient ``g_i`` and moves the parameters from ``x`` to
    ``x_i``; the chain restores ``x`` and sets ``g_{i+1} = x - x_i``. So
    ``GradChain(params, [SGD(lr=1, momentum=0.9, nesterov=True), Adam(lr=1e-2)])`` is Adam on
    Nesterov-momentum gradients (up to the rounding of ``x - x_i``; keep intermediate stages
    at ``lr=1`` so that difference is the update itself).

    The first stage receives the closure: a torch optimizer calls it (with backward, as
    usual; ``torch.optim.LBFGS`` works there); a gradient estimator or :class:`RandomGrad`
    uses it without backward, which makes the whole chain zeroth-order. A bare estimator
    stage (no ``opt``) hands its estimate on directly. Parameters whose ``.grad`` is ``None``
    after a stage get ``None`` for the next stage too.

    Stages are given as factories, ``(class, kwargs)`` pairs, an estimator constructed without
    params, or optimizers already constructed over exactly the chain's parameters (same
    tensors, any grouping), as in ``GradChain(model.parameters(), [torch.optim.SGD(
    model.parameters(), lr=1, momentum=0.9, nesterov=True), Lion(model.parameters(), lr=1e-2)])``.

    **Per-group options.** An option of a param group (``{"params": [...], "lr": 0.1}``) goes
    to the *last* stage that has that option (in its ``defaults``), and only to it: ``lr``
    therefore sets the step size of the stage that writes the update, while earlier stages
    keep their own ``lr`` (no ``lr * lr`` effect), and an option only an earlier stage knows
    (``momentum`` before ``Adam``, an estimator's ``h``) reaches that stage. A constructed
    stage keeps the groups it was built with: an option routed to it, or an option no stage
    has, is not applied and raises :class:`~torchzero_bridge.errors.IgnoredOptionWarning`.

    **Non-finite updates.** If the first stage's loss is not finite, an estimator reports
    non-finite evaluations, or a stage hands on a non-finite gradient, the later stages are
    skipped for that step, the parameters keep the values the step started from, every
    ``.grad`` is set to ``None``, and a :class:`~torchzero_bridge.errors.NonFiniteLossWarning`
    says which stage it was.

    Args:
        params: tensors or param-group dicts (options as above).
        optimizers: the stages (see above).

    Attributes:
        stages: the optimizers, in order.

    Raises:
        ValueError: no stages, a stage that needs the closure placed after the first, or a
            constructed stage over other tensors (the message names them).
        TypeError: a stage that is not an optimizer, factory, pair or unbound estimator; an
            integer or boolean tensor (the message names it and its dtype).

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
        self._constructed: list[bool] = []
        bare = [_bare(g) for g in self.param_groups]
        for i, spec in enumerate(optimizers):
            constructed = is_constructed(spec)
            stage = build_optimizer(
                spec, forward_groups(bare, ()), owner="GradChain", what=f"optimizers[{i}]", closure_ok=True
            )
            if i > 0 and needs_closure(stage):
                raise ValueError(
                    f"GradChain: optimizers[{i}] ({type(stage).__name__}) evaluates the closure itself, so it "
                    "can only be the first stage"
                )
            self.stages.append(stage)
            self._constructed.append(constructed)
        for k, group in enumerate(self.param_groups):
            for i, options in enumerate(self._route(group, f"param_groups[{k}]")):
                self.stages[i].param_groups[k].update(options)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``; every stage gets the new tensors, options routed as above."""
        given = param_group.get("params", [])
        params = [given] if isinstance(given, torch.Tensor) else list(given)
        require_floating({"params": params}, len(self.param_groups), "GradChain", "gradient stages")
        super().add_param_group({**param_group, "params": params})
        stages = getattr(self, "stages", None)
        if not stages:  # during __init__: the stages are built afterwards
            return
        group = self.param_groups[-1]
        routed = self._route(group, f"param_groups[{len(self.param_groups) - 1}]")
        for stage, options in zip(stages, routed):
            stage.add_param_group({**_bare(group), **options})

    def _route(self, group: dict[str, Any], where: str) -> list[dict[str, Any]]:
        """Per stage, the options of ``group`` it receives (the last stage having each option)."""
        out: list[dict[str, Any]] = [{} for _ in self.stages]
        for key, value in group.items():
            if key in ("params", "param_names"):
                continue
            owners = [i for i, s in enumerate(self.stages) if key in s.defaults]
            if not owners:
                warn_ignored(f"GradChain: {where} option {key!r}", "no stage has this option")
            elif self._constructed[owners[-1]]:
                warn_ignored(
                    f"GradChain: {where} option {key!r}",
                    f"it belongs to optimizers[{owners[-1]}], which was constructed with its own param groups; "
                    "set it there",
                )
            else:
                out[owners[-1]][key] = value
        return out

    def step(self, closure: Callable[..., Any] | None = None) -> Any:
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
            try:  # an error or interrupt inside a stage or the hand-on leaves the step's start point
                out = stage.step(closure) if i == 0 and closure is not None else stage.step()
                if hands_on:
                    assert before is not None
                    _hand_on(params, before)
            except BaseException:
                if hands_on and before is not None:
                    with torch.no_grad():
                        for p, b in zip(params, before):
                            p.copy_(b)
                raise
            if i == 0:
                loss = out
            if i < last and not _trustworthy(stage, out if i == 0 else None, params):
                warn_nonfinite(
                    f"GradChain: optimizers[{i}] ({type(stage).__name__}) produced a non-finite loss or update; "
                    "the later stages were skipped and the parameters left as they were"
                )
                for p in params:
                    p.grad = None
                break
        return loss

    def _extra_state(self) -> dict[str, Any]:
        return {"stages": [s.state_dict() for s in self.stages]}

    def _check_extra_state(self, state: dict[str, Any]) -> None:
        stages = state.get("stages", [])
        if len(stages) != len(self.stages):
            raise ValueError(f"GradChain: the state has {len(stages)} stages, this chain has {len(self.stages)}")

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        for stage, sd in zip(self.stages, state.get("stages", [])):
            stage.load_state_dict(sd)


def _bare(group: dict[str, Any]) -> dict[str, Any]:
    """The group's tensors (and names) without its options."""
    return {k: (list(v) if k == "params" else v) for k, v in group.items() if k in ("params", "param_names")}


def _trustworthy(stage: torch.optim.Optimizer, loss: Any, params: list[torch.Tensor]) -> bool:
    """False when the stage's result must not reach the next stage (non-finite loss or gradient)."""
    if loss is not None:
        value = loss.detach() if isinstance(loss, torch.Tensor) else loss
        if not math.isfinite(float(value)):
            return False
    if isinstance(stage, GradientEstimator) and stage._last_nonfinite:
        return False
    grads = [p.grad for p in params if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


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
