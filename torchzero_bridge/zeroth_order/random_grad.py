"""RandomGrad: a gradient from one random perturbation and the sign of the loss change.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import RandomGrad
    >>> w = torch.zeros(2, requires_grad=True)
    >>> opt = RandomGrad([w], lr=0.05, seed=0)
    >>> for _ in range(200):
    ...     loss = opt.step(lambda backward=True: ((w - 1) ** 2).sum())
    >>> bool(loss < 0.05), opt.nfev
    (True, 400)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

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
from torchzero_bridge.zeroth_order.directions import piece_of
from torchzero_bridge.zeroth_order.estimators.base import ParamsArg
from torchzero_bridge.zeroth_order.estimators.walk import Walk
from torchzero_bridge.zeroth_order.inner import OptimizerSpec, build_optimizer, check_spec, forward_groups
from torchzero_bridge.zeroth_order.schedules import SizeSchedule, resolve_size_schedule
from torchzero_bridge.zeroth_order.smooth_directions import Distribution, make_sampler

__all__ = ["RandomGrad"]


class RandomGrad(StatefulOptimizer, SkipsFrozen, torch.optim.Optimizer):
    """Perturb, compare, and hand ``±perturbation`` to an optimizer as the gradient.

    One step: evaluate ``f(x)``; draw a direction ``d`` and evaluate ``f(x + lr·d)``; restore
    ``x``. If the loss rose, the gradient is ``d`` (an SGD step of ``lr`` moves to
    ``x - lr·d``, away from the worse point); otherwise it is ``-d`` (an SGD step of ``lr``
    lands exactly on the tried point ``x + lr·d``). With ``best_of=k`` the best of ``k``
    directions is compared. The inner optimizer ``opt`` then applies its own rule to that
    gradient; without one the SGD step above is taken.

    Closure runs per step: ``1 + best_of`` (2 by default; ``1 + best_of_schedule(t)`` at the ``t``-th step,
    0-based, with a schedule), all without backward. A
    non-finite trial loss counts as a rise; a non-finite ``f(x)`` skips the update with a
    :class:`~torchzero_bridge.errors.NonFiniteLossWarning`. ``step`` returns ``f(x)``, the loss
    before the update.

    Memory: each trial moves the parameters in place to ``x + lr·d`` and back bit for bit,
    regenerating ``d`` from its seed (see :mod:`~torchzero_bridge.zeroth_order.estimators.walk`);
    ``.grad`` is the only parameter-sized buffer (no copy of the parameters). Passes over the
    parameters per step: ``2·best_of + 1`` (``"sphere"``: one more per direction).

    Args:
        params: tensors or param-group dicts; per-group option ``lr`` (the perturbation size
            and the built-in SGD step). Other group keys are passed to ``opt``; with ``opt``, a
            group's ``bounds=(lo, hi)`` is checked and applied by projecting after each update.
        lr: perturbation size.
        opt: inner optimizer: one constructed over the same parameters
            (``torch.optim.AdamW(model.parameters(), lr=1e-3)``, any optimizer class), a factory
            (``lambda p: torch.optim.AdamW(p, lr=1e-3)``) or a ``(class, kwargs)`` pair; ``None``:
            plain SGD with ``lr``. It is stepped without a closure, so one that needs a closure
            (``torch.optim.LBFGS``) is refused. A constructed one keeps its own param groups
            (group options meant for it raise ``IgnoredOptionWarning``).
        distribution: ``"gaussian"`` (default), ``"rademacher"``, ``"uniform"`` or ``"sphere"``, or
            smoothed directions (``smooth_directions.Smoothed``/``AR1``; the ``AR1`` chain advances
            with the direction each step uses).
        best_of: directions tried per step (the first step's, with ``best_of_schedule``).
        seed: seed of the directions.
        generator: draw the sample seeds from this generator instead.
        best_of_schedule: directions per step over time, like the estimators' ``n_samples_schedule``:
            ``None`` (always ``best_of``), ``"linear"``, ``"geometric"`` or a callable of the 0-based
            step index (:attr:`steps`, kept by ``state_dict``); see
            :mod:`~torchzero_bridge.zeroth_order.schedules`.

    Attributes:
        nfev: closure runs so far.
        steps: completed steps (the step index of ``best_of_schedule``).

    Raises:
        ValueError: ``lr <= 0``, ``best_of < 1``, unknown distribution or schedule name; at a step, a
            scheduled count below 1.
        TypeError: a non-floating parameter, ``opt`` of the wrong kind (or needing a closure), no
            closure at ``step``.
        ValueError: a constructed ``opt`` over other tensors (the message names them).

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import RandomGrad
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = RandomGrad(model.parameters(), lr=1e-3, best_of=2, seed=0,
        ...                  opt=lambda p: torch.optim.AdamW(p, lr=1e-2))
        >>> X, y = torch.randn(32, 4), torch.randn(32, 1)
        >>> loss = opt.step(lambda backward=True: ((model(X) - y) ** 2).mean())
        >>> opt.nfev
        3
    """

    needs_closure: ClassVar[bool] = True

    def __init__(
        self,
        params: ParamsArg,
        lr: float = 1e-5,
        opt: OptimizerSpec | None = None,
        *,
        distribution: Distribution = "gaussian",
        best_of: int = 1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        best_of_schedule: SizeSchedule = None,
    ) -> None:
        check_positive(lr, "lr", "RandomGrad")
        self.best_of = check_int(best_of, "best_of", "RandomGrad")
        self.best_of_schedule = best_of_schedule
        self._best_of_at = resolve_size_schedule(
            best_of_schedule, self.best_of, "best_of", "RandomGrad", option="best_of_schedule"
        )
        self.steps = 0
        self.sampler = make_sampler(distribution, "RandomGrad")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"RandomGrad: generator expected a torch.Generator, got {type(generator).__name__}")
        check_spec(opt, owner="RandomGrad", what="opt")
        self.rng = SeededRNG(seed, generator)
        self._seed_device = "cpu" if generator is None else str(generator.device)
        self.opt: torch.optim.Optimizer | None = None
        self._has_opt = opt is not None  # group options then go to the inner optimizer
        self.nfev = 0
        if isinstance(params, torch.Tensor):
            raise TypeError("RandomGrad: params expected an iterable of tensors or of param-group dicts, got a Tensor")
        super().__init__(params, {"lr": lr})
        if opt is not None:
            self.opt = build_optimizer(opt, forward_groups(self.param_groups, ["lr"]), owner="RandomGrad", what="opt")

    @property
    def distribution(self) -> Distribution:
        """The direction distribution (a name, ``Smoothed`` or ``AR1``)."""
        return self.sampler.distribution

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group`` plus validation; the inner optimizer gets the group too."""
        super().add_param_group(param_group)
        check_added_group(self)  # no tensor shares memory with another; valid bounds
        group = self.param_groups[-1]
        check_positive(group["lr"], "lr", "RandomGrad")
        require_floating(group, len(self.param_groups) - 1, "RandomGrad", "random-direction steps")
        if getattr(self, "opt", None) is not None:
            self.opt.add_param_group(forward_groups([group], ["lr"])[0])  # type: ignore[union-attr]
        elif not getattr(self, "_has_opt", False):
            unused = sorted(set(group) - {"params", "param_names", "lr"})
            if unused:
                warn_user(
                    f"RandomGrad: param-group option(s) {unused} are not used: without an inner optimizer "
                    "(opt=None) only the group option 'lr' applies",
                    IgnoredOptionWarning,
                )

    def step(self, closure: Callable[..., Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One perturb-compare-update step.

        Args:
            closure: re-evaluates the model and returns the loss; called without backward.

        Returns:
            ``f(x)`` at the parameters the step started from (0-dim float64 tensor).

        Raises:
            TypeError: no closure.
        """
        f = CountedClosure(closure, "RandomGrad")
        try:
            with torch.no_grad():
                loss, applied = self._step(f)
            self.steps += 1
        finally:
            self.nfev += f.count
        if applied and self.opt is not None:
            self.opt.step()
            clamp_to_group_bounds(self.param_groups)  # the inner optimizer knows nothing of bounds
        return torch.tensor(loss, dtype=torch.float64)

    # ------------------------------------------------------------------ internals
    def _step(self, f: CountedClosure) -> tuple[float, bool]:
        tensors = [p for g in self.param_groups for p in g["params"]]
        reals = [torch.view_as_real(p) if p.is_complex() else p for p in tensors]
        lrs = [float(g["lr"]) for g in self.param_groups for _ in g["params"]]
        f0 = f()
        if f.nonfinite:
            warn_nonfinite_step("RandomGrad", f.nonfinite, f"no update was applied (f(x) = {f0})")
            return f0, False
        best_seed: int | None = None
        best_f = math.inf
        for _ in range(self._best_of_at(self.steps)):
            # x -> x + lr d -> x in place, exactly (no copy of the parameters; see estimators.walk)
            seed = self._draw_seed()
            walk = Walk(reals, lrs, (1,), self.sampler, seed, self.sampler.sphere_scale(seed, reals))
            try:
                walk.advance()
                value = f()
            finally:
                walk.finish()
            value = f.record.worst_if_nonfinite(value)  # a non-finite trial counts as a rise
            if best_seed is None or value < best_f:
                best_seed, best_f = seed, value
        sign = 1.0 if best_f > f0 else -1.0  # rose: +d; otherwise -d
        assert best_seed is not None
        grads: list[torch.Tensor] = []
        for p in tensors:
            g = p.grad
            if g is None or g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
                g = p.grad = torch.zeros_like(p)
            grads.append(torch.view_as_real(g) if g.is_complex() else g)
        for i, sl, d in self.sampler.pieces(best_seed, reals, self.sampler.sphere_scale(best_seed, reals)):
            piece_of(grads[i], sl).copy_(d).mul_(sign)
        self.sampler.commit(best_seed, reals)  # an AR1 chain advances with the direction used
        if self.opt is None:
            for p, lr in zip(tensors, lrs):
                p.sub_(p.grad, alpha=lr)
        return f0, True

    def _draw_seed(self) -> int:
        gen = self.rng.get(self._seed_device)
        return int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())

    def _extra_state(self) -> dict[str, Any]:
        return {
            "rng": self.rng.state_dict(),
            "opt": None if self.opt is None else self.opt.state_dict(),
            "nfev": self.nfev,
            "steps": self.steps,
            "directions": self.sampler.state_dict(),
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.rng.load_state_dict(state["rng"])
        if self.opt is not None and state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])
        self.nfev = int(state.get("nfev", self.nfev))
        self.steps = int(state.get("steps", self.steps))
        if state.get("directions") is not None:
            self.sampler.load_state_dict(state["directions"])
