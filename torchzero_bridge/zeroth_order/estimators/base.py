"""GradientEstimator: the shared machinery of every zeroth-order gradient estimator.

An estimator can be used three ways:

1. **as a torch optimizer** with an inner optimizer that applies the update:
   ``SPSA(model.parameters(), h=1e-3, opt=lambda p: torch.optim.Adam(p, lr=1e-2))``.
   Without ``opt`` its ``step`` only fills each parameter's ``.grad`` (the parameters are left
   as they were), so any optimizer can be stepped afterwards;
2. **as the first stage of a** :class:`~torchzero_bridge.zeroth_order.GradChain`, constructed
   without parameters: ``GradChain(params, [SPSA(h=1e-3), (torch.optim.Adam, {"lr": 1e-2})])``;
3. **as the ``jac`` of** :class:`~torchzero_bridge.MinimizeWrapper`, constructed without
   parameters: ``MinimizeWrapper(params, method="BFGS", jac=FDM(formula="central3"))``. Its
   evaluations then go through the wrapper's objective (counted in ``result.nfev``, best
   point kept), and ``hvp_method="forward"``/``"central"`` differences its gradients for
   Newton-type methods, so the whole solve runs without a backward pass.

All evaluations run without backward (``closure(backward=False)`` under ``torch.no_grad()``
when the closure accepts it). Per-group option: ``h`` (the step); other keys of a param group
are passed on to the inner optimizer (``{"params": ..., "h": 1e-2, "lr": 0.1}``).
A group's ``bounds=(lo, hi)`` is checked when the group is added (``lo <= hi``, no NaN, shapes)
and, with ``opt=``, applied: the parameters are projected into it after every inner update
(without ``opt`` nothing moves them, so it is reported as unused).
Learning-rate schedulers attach to the inner optimizer, ``estimator.opt``.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import FDM
    >>> w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    >>> est = FDM([w], formula="central3", h=1e-4)
    >>> loss = est.step(lambda backward=True: (w ** 2).sum())
    >>> [round(v, 6) for v in w.grad.tolist()], est.nfev
    ([2.0, 4.0], 4)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from torchzero_bridge._checks import check_int, check_positive
from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.closure import CountedClosure
from torchzero_bridge.core.frozen import SkipsFrozen
from torchzero_bridge.core.param_checks import check_added_group, clamp_to_group_bounds, require_floating
from torchzero_bridge.core.record import warn_nonfinite_step
from torchzero_bridge.core.state import StatefulOptimizer
from torchzero_bridge.errors import IgnoredOptionWarning
from torchzero_bridge.zeroth_order.common import SeededRNG
from torchzero_bridge.zeroth_order.inner import OptimizerSpec, build_optimizer, check_spec, forward_groups
from torchzero_bridge.zeroth_order.schedules import SizeSchedule, resolve_size_schedule

__all__ = ["Block", "GradientEstimator", "ParamsArg"]

ParamsArg = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


@dataclass
class Block:
    """One param group as an estimator sees it.

    Attributes:
        params: real views of the group's tensors (complex ones as ``(..., 2)`` pairs); an
            estimator perturbs these in place and must restore them.
        grads: real views of the gradient buffers to fill (same shapes as ``params``).
        h: the group's step.
        tensors: the original tensors (for estimators that need them, e.g. forward AD).
    """

    params: list[torch.Tensor]
    grads: list[torch.Tensor]
    h: float
    tensors: list[torch.Tensor]


class GradientEstimator(StatefulOptimizer, SkipsFrozen, torch.optim.Optimizer):
    """Base class: a zeroth-order gradient estimator that is also a ``torch.optim.Optimizer``.

    Subclasses implement :meth:`_estimate`. See the module docstring for the three ways
    to use one.

    Args:
        params: tensors or param-group dicts, or ``None`` for an unbound estimator (a ``jac``
            or a :class:`GradChain` stage).
        defaults: per-group options and their defaults (``{"h": 1e-3}``).
        opt: the inner optimizer: constructed over the same params, a factory or a ``(class, kwargs)``
            pair (see :mod:`~torchzero_bridge.zeroth_order.inner`); ``None``: ``step`` only fills ``.grad``.
        seed: seed of the random directions (randomized estimators).
        generator: a ``torch.Generator`` to draw sample seeds from instead.
        randomized: whether the estimator draws random directions.

    Attributes:
        opt: the inner optimizer (``None`` without one).
        nfev: closure runs made by ``step``/``estimate`` so far.
        estimates: estimates made so far (completed steps; ``jac`` calls for MinimizeWrapper): the
            step index of ``n_samples_schedule``, kept by ``state_dict``.
    """

    needs_closure: ClassVar[bool] = True
    """``step`` must receive the closure (it evaluates the loss itself)."""

    def __init__(
        self,
        params: ParamsArg | None,
        defaults: dict[str, Any],
        *,
        opt: OptimizerSpec | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        randomized: bool = False,
    ) -> None:
        name = type(self).__name__
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{name}: generator expected a torch.Generator, got {type(generator).__name__}")
        check_spec(opt, owner=name, what="opt")
        self.rng = SeededRNG(seed, generator) if randomized else None
        self._seed_device = "cpu" if generator is None else str(generator.device)
        self._opt_spec = opt
        self.opt: torch.optim.Optimizer | None = None
        self.nfev = 0
        self.estimates = 0
        # torch needs a non-empty list; start with an empty group and drop it (unbound state)
        super().__init__([{"params": []}], defaults)
        self.param_groups.clear()
        if params is not None:
            self._attach(params)

    # ------------------------------------------------------------------ binding
    @property
    def is_bound(self) -> bool:
        """Whether the estimator has parameters (can ``step``)."""
        return bool(self.param_groups)

    def bind(self, params: ParamsArg) -> GradientEstimator:
        """Give an estimator constructed without parameters its parameters (in place).

        Args:
            params: tensors or param-group dicts.

        Returns:
            ``self``, now usable as an optimizer.

        Raises:
            RuntimeError: already bound.
        """
        if self.is_bound:
            raise RuntimeError(
                f"{type(self).__name__} already has parameters; construct a new one for other parameters"
            )
        self._attach(params)
        return self

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group`` plus validation; the inner optimizer gets the group too."""
        super().add_param_group(param_group)
        check_added_group(self)  # no tensor shares memory with another; valid bounds
        group = self.param_groups[-1]
        for key in self.defaults:
            if key == "h":
                check_positive(group["h"], "h", type(self).__name__)
        require_floating(group, len(self.param_groups) - 1, type(self).__name__, "gradient estimators")
        if getattr(self, "opt", None) is not None:
            self.opt.add_param_group(forward_groups([group], self.defaults)[0])  # type: ignore[union-attr]
        elif group["params"] and self._opt_spec is None:
            unused = sorted(set(group) - set(self.defaults) - {"params", "param_names"})
            if unused:
                warn_user(
                    f"{type(self).__name__}: param-group option(s) {unused} are not used: without an inner "
                    "optimizer (opt=None) only the group options "
                    f"{sorted(self.defaults)} apply",
                    IgnoredOptionWarning,
                )

    def _attach(self, params: ParamsArg) -> None:
        name = type(self).__name__
        if isinstance(params, torch.Tensor):
            raise TypeError(f"{name}: params expected an iterable of tensors or of param-group dicts, got a Tensor")
        items: list[Any] = list(params)
        if not items:
            raise ValueError(f"{name}: params is empty; expected at least one tensor")
        groups: list[dict[str, Any]] = [dict(g) for g in items] if isinstance(items[0], dict) else [{"params": items}]
        for g in groups:
            self.add_param_group(g)
        if self._opt_spec is not None:
            self.opt = build_optimizer(
                self._opt_spec, forward_groups(self.param_groups, self.defaults), owner=name, what="opt"
            )

    # ------------------------------------------------------------------ optimizer API
    def step(self, closure: Callable[..., Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """Estimate the gradient into ``.grad``, then let the inner optimizer (if any) update.

        Args:
            closure: re-evaluates the model and returns the loss; called without backward.

        Returns:
            The loss the estimator reports for this step (see the class docstring), as a
            0-dim float64 tensor.

        Raises:
            TypeError: no closure.
            RuntimeError: the estimator was constructed without parameters.
        """
        loss = self.estimate(closure)
        if self._last_nonfinite:
            warn_nonfinite_step(type(self).__name__, self._last_nonfinite)
            for group in self.param_groups:  # and no non-finite estimate is left in .grad
                for p in group["params"]:
                    p.grad = None
        elif self.opt is not None:
            self.opt.step()
            clamp_to_group_bounds(self.param_groups)  # the inner optimizer knows nothing of bounds
        return torch.tensor(loss, dtype=torch.float64)

    _last_nonfinite = 0

    def estimate(
        self, closure: Callable[..., Any] | None, param_groups: Sequence[dict[str, Any]] | None = None
    ) -> float:
        """Fill each parameter's ``.grad`` with the estimate; return the loss for the step.

        The parameters hold their original values afterwards (also when the closure raises; ``.grad`` is then
        ``None``, never a partial estimate; after a non-finite loss :meth:`step` also sets it to ``None``).
        The estimate is written into the existing ``.grad`` tensors when they fit (same shape,
        dtype and device), else into new ones; whatever the closure does to ``.grad`` is
        overwritten.

        Args:
            closure: re-evaluates the model and returns the loss.
            param_groups: groups to estimate for (default: this optimizer's own).

        Raises:
            TypeError: no closure.
            RuntimeError: no parameters.
        """
        groups = self.param_groups if param_groups is None else list(param_groups)
        if not groups:
            raise RuntimeError(
                f"{type(self).__name__} was constructed without parameters: pass params to use it as an "
                "optimizer, or use it as MinimizeWrapper's jac or as the first stage of a GradChain"
            )
        f = CountedClosure(closure, type(self).__name__)
        blocks = [self._block(g) for g in groups if g["params"]]
        # the buffers are detached from .grad while the closure runs: a closure may zero or
        # replace .grad, or accumulate a backward pass into it
        owners = [(t, t.grad) for b in blocks for t in b.tensors]
        for t, _ in owners:
            t.grad = None
        done = False
        try:
            with torch.no_grad():
                loss = self._estimate(f, blocks)
            done = True
            self.estimates += 1
        finally:
            self.nfev += f.count
            self._last_nonfinite = f.nonfinite
            for t, g in owners:  # after an error the buffers hold a partial estimate: no gradient then
                t.grad = g if done else None
        return loss

    # ------------------------------------------------------------------ scipy jac
    def make_scipy_jac(self, objective: Any) -> Callable[..., np.ndarray]:
        """A scipy ``jac(x)`` that estimates the gradient through ``objective.value``.

        Used by :class:`~torchzero_bridge.MinimizeWrapper` for ``jac=<estimator>``: every
        probe is an ``objective.value`` call, so evaluations are counted in ``nfev``, the
        best point is tracked, and ``f(x)`` already computed by the solver is reused from the
        objective's memo (``forward2``: ``n`` new runs per gradient, like scipy's ``"2-point"``).
        The objective remembers the two most recent gradients (its ``gradient_source``).

        Args:
            objective: a :class:`~torchzero_bridge.Objective`.
        """
        flat = objective.flat
        xt = torch.zeros(flat.n, dtype=torch.float64)
        gt = torch.zeros(flat.n, dtype=torch.float64)
        x_np = xt.numpy()
        blocks: list[Block] = []
        for group, (a, b) in zip(flat.groups, flat.layout.group_slices):
            if b > a:
                h = check_positive(group.get("h", self.defaults.get("h", 1.0)), "h", type(self).__name__)
                blocks.append(Block([xt[a:b]], [gt[a:b]], h, [xt[a:b]]))

        def f() -> float:
            return float(objective.value(x_np))

        def jac(x: np.ndarray, *args: Any) -> np.ndarray:
            xt.copy_(torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(-1)))
            with torch.no_grad():
                self._estimate(f, blocks)
            self.estimates += 1
            return gt.numpy().copy()

        return jac

    # ------------------------------------------------------------------ for subclasses
    def _schedule_samples(self, n_samples: Any, schedule: SizeSchedule) -> int:
        """Check ``n_samples``, keep ``schedule`` (``n_samples_schedule=``) resolved; return ``n_samples``."""
        name = type(self).__name__
        n = check_int(n_samples, "n_samples", name)
        self.n_samples_schedule = schedule
        self._sample_count = resolve_size_schedule(schedule, n, "n_samples", name, option="n_samples_schedule")
        return n

    def n_samples_at(self, step: int) -> int:
        """Directions the estimate with 0-based index ``step`` uses (the next one: ``n_samples_at(estimates)``)."""
        return self._sample_count(step)

    def _estimate(self, f: Callable[[], float], blocks: list[Block]) -> float:
        """Fill every ``block.grads`` tensor; restore ``block.params``; return the step's loss."""
        raise NotImplementedError

    def _draw_seed(self) -> int:
        """A fresh sample seed from the estimator's generator."""
        assert self.rng is not None
        gen = self.rng.get(self._seed_device)
        return int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())

    def _extra_state(self) -> dict[str, Any]:
        sampler = getattr(self, "sampler", None)  # the randomized estimators' direction sampler
        return {
            "rng": None if self.rng is None else self.rng.state_dict(),
            "opt": None if self.opt is None else self.opt.state_dict(),
            "nfev": self.nfev,
            "estimates": self.estimates,
            "directions": None if sampler is None else sampler.state_dict(),  # an AR1 chain's previous direction
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if self.rng is not None and state.get("rng") is not None:
            self.rng.load_state_dict(state["rng"])
        sampler = getattr(self, "sampler", None)
        if sampler is not None and state.get("directions") is not None:
            sampler.load_state_dict(state["directions"])
        if self.opt is not None and state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])
        self.nfev = int(state.get("nfev", self.nfev))
        self.estimates = int(state.get("estimates", self.estimates))

    # ------------------------------------------------------------------ internals
    def _block(self, group: dict[str, Any]) -> Block:
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        for p in group["params"]:
            g = p.grad
            if g is None or g.shape != p.shape or g.dtype != p.dtype or g.device != p.device or g.requires_grad:
                g = p.grad = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(torch.view_as_real(p) if p.is_complex() else p)
            grads.append(torch.view_as_real(g) if g.is_complex() else g)
        h = group.get("h", self.defaults.get("h", math.nan))
        if "h" in self.defaults:
            check_positive(h, "h", type(self).__name__)
        return Block(params, grads, float(h), list(group["params"]))
