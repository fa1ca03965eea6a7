"""MeZO: zeroth-order fine-tuning at the memory of inference and the time of two forward passes.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import MeZO
    >>> w = torch.ones(1000, requires_grad=True)
    >>> mezo = MeZO([w], h=1e-3, seed=0, opt=lambda p: torch.optim.SGD(p, lr=1e-3))
    >>> loss = mezo.step(lambda backward=True: (w ** 2).sum())
    >>> mezo.nfev, w.grad is None, bool((w < 1).any())
    (2, True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from torchzero_bridge.core.closure import CountedClosure
from torchzero_bridge.core.param_checks import clamp_to_group_bounds
from torchzero_bridge.core.record import warn_nonfinite_step
from torchzero_bridge.zeroth_order.common import deferred_interrupts
from torchzero_bridge.zeroth_order.directions import piece_of
from torchzero_bridge.zeroth_order.estimators.base import GradientEstimator, ParamsArg
from torchzero_bridge.zeroth_order.estimators.randomized import RandomizedFDM
from torchzero_bridge.zeroth_order.estimators.walk import After
from torchzero_bridge.zeroth_order.inner import OptimizerSpec
from torchzero_bridge.zeroth_order.schedules import SizeSchedule
from torchzero_bridge.zeroth_order.smooth_directions import AR1, Distribution

__all__ = ["MeZO", "is_plain_sgd"]


def is_plain_sgd(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt`` is a ``torch.optim.SGD`` whose step is exactly ``p -= lr·grad``.

    That is: the class itself (not a subclass), ``momentum=0`` and ``weight_decay=0`` in every
    group (``dampening`` and ``nesterov`` then play no part; ``maximize`` is allowed), not
    ``differentiable``, and no step hooks on it or on all optimizers. ``lr`` is read from
    the param groups at every step, so learning-rate schedulers keep working.

    Example:
        >>> import torch
        >>> w = [torch.zeros(1, requires_grad=True)]
        >>> is_plain_sgd(torch.optim.SGD(w, lr=0.1)), is_plain_sgd(torch.optim.SGD(w, lr=0.1, momentum=0.9))
        (True, False)
    """
    if type(opt) is not torch.optim.SGD:
        return False
    if getattr(opt, "_optimizer_step_pre_hooks", None) or getattr(opt, "_optimizer_step_post_hooks", None):
        return False
    from torch.optim import optimizer as _optimizer

    if getattr(_optimizer, "_global_optimizer_pre_hooks", None) or getattr(
        _optimizer, "_global_optimizer_post_hooks", None
    ):
        return False
    if getattr(opt, "grad_scale", None) is not None or getattr(opt, "found_inf", None) is not None:
        return False
    return all(
        g.get("momentum", 0) == 0 and g.get("weight_decay", 0) == 0 and not g.get("differentiable", False)
        for g in opt.param_groups
    )


class MeZO(RandomizedFDM):
    """Memory-efficient SPSA (Malladi et al., 2023): two forward passes a step, no gradient buffer.

    **The seed path** (``opt=None`` or a plain ``torch.optim.SGD``, see :func:`is_plain_sgd`):
    a step allocates nothing parameter-sized. The parameters are moved in place, one piece at a
    time, along a direction regenerated from its seed, evaluated, moved back exactly (bit for
    bit, in every dtype) and updated ``p -= lr·D/h·d`` on that same way back; ``.grad`` is not
    touched. Passes over the parameters for the default ``central3`` with one sample: three
    (to ``x - h d``, which also records the few entries whose way back would round wrong; to
    ``x + h d``; back plus the update), each regenerating the direction (~0.8 ns per entry on a
    CPU core for Rademacher, ~12 ns for Gaussian: keep ``"rademacher"`` on CPU). So a step
    costs two forward passes plus three cheap passes. ``"sphere"`` adds one pass per sample
    for its norm; ``n_samples = k > 1`` adds ``k`` update passes. Extra memory: two scratch
    pieces of at most ``directions.CHUNK`` entries and three bytes per entry whose way back
    would round wrong (~6% of the bytes of float32 weights at ``h = 1e-3``).
    With ``opt=None`` the parameters end exactly where they started; the step's estimate is
    kept compactly in :attr:`projected_grads`. An exception raised in the closure, or SIGINT
    at any moment, leaves the parameters at the start of the step, or, once the way back has
    begun, at the end of the finished step: never at a trial point or half-updated (SIGINT is
    held until a pass is complete).

    **The general path** (any other inner optimizer, ``fill_grad=True``, or as a
    :class:`GradChain` stage): the estimate is written into ``.grad`` (one parameter-sized
    buffer per parameter, created if missing) and the inner optimizer steps on it; add the
    optimizer's own state (Adam: two more parameter-sized buffers).

    With the same ``seed`` the estimate equals :class:`RandomizedFDM`'s with the same options
    (``distribution="rademacher"`` gives :class:`SPSA`'s), and the seed-path iterates equal the
    general path's with ``torch.optim.SGD`` up to the rounding of the update.

    Evaluation counts and returned loss as in :class:`RandomizedFDM` (default ``central3``:
    2 runs per sample, loss = mean of ``f(x ± h d)``).

    Args:
        params: tensors or param-group dicts (per-group option ``h``), or ``None``.
        h: the perturbation size.
        n_samples: directions per estimate.
        formula: finite-difference formula (see :class:`RandomizedFDM`).
        distribution: ``"rademacher"`` (default), ``"gaussian"``, ``"uniform"``, ``"sphere"`` or
            ``smooth_directions.Smoothed`` (``AR1`` is refused: see the ``ValueError`` below).
        opt: inner optimizer factory.
        seed: seed of the directions.
        generator: draw the sample seeds from this generator instead.
        n_samples_schedule: directions per estimate over time (see :class:`RandomizedFDM`; the seed
            path counts its steps in :attr:`estimates` too).
        fill_grad: write the estimate into ``.grad``. ``None`` (default): only when something
            reads it, an inner optimizer other than plain SGD or a :class:`GradChain` (an
            estimator constructed without parameters and bound later). ``False`` with an
            optimizer that is not plain SGD is an error.

    Attributes:
        projected_grads: the last step's ``(sample seed, D)`` pairs, ``D`` the directional
            difference: the estimate for a group with step ``h`` is the mean of ``D / h · d``
            over the pairs, ``d`` regenerated from the seed (seed path and general path alike).

    Raises:
        TypeError: ``fill_grad`` is not a bool or ``None``.
        ValueError: ``fill_grad=False`` with an inner optimizer that reads ``.grad``; an ``AR1`` distribution.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import MeZO
        >>> w = torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)
        >>> mezo = MeZO([w], h=1e-2, seed=0)
        >>> for _ in range(10):
        ...     loss = mezo.step(lambda backward=True: ((w.float() - 1) ** 2).sum())
        >>> w.tolist(), len(mezo.projected_grads)
        ([0.0, 0.0, 0.0], 1)
    """

    def __init__(
        self,
        params: ParamsArg | None = None,
        *,
        h: float = 1e-3,
        n_samples: int = 1,
        formula: str = "central3",
        distribution: Distribution = "rademacher",
        opt: OptimizerSpec | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        fill_grad: bool | None = None,
        n_samples_schedule: SizeSchedule = None,
    ) -> None:
        if fill_grad is not None and not isinstance(fill_grad, bool):
            raise TypeError(f"MeZO: fill_grad expected True, False or None, got {fill_grad!r}")
        self.fill_grad = fill_grad
        if isinstance(distribution, AR1):
            raise ValueError(
                "MeZO: distribution AR1(...) is not supported: MeZO regenerates each direction from its seed "
                "after the samples, and an AR1 direction also depends on the previous one; use RandomizedFDM"
            )
        self._chained = False
        self.projected_grads: list[tuple[int, float]] = []
        super().__init__(
            params,
            h=h,
            n_samples=n_samples,
            n_samples_schedule=n_samples_schedule,
            formula=formula,
            distribution=distribution,
            opt=opt,
            seed=seed,
            generator=generator,
        )
        if self.opt is not None:
            self._fills_grad()

    def bind(self, params: ParamsArg) -> GradientEstimator:
        """Bind parameters (as a :class:`GradChain` does): the estimate then goes into ``.grad``."""
        self._chained = True
        return super().bind(params)

    def step(self, closure: Callable[..., Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One MeZO step: the seed path or the general path (see the class docstring).

        Args:
            closure: re-evaluates the model and returns the loss; called without backward.

        Returns:
            The loss for the step (0-dim float64 tensor).
        """
        if self._fills_grad():
            return super().step(closure)
        if not self.param_groups:
            raise RuntimeError(
                "MeZO was constructed without parameters: pass params to use it as an optimizer, "
                "or use it as MinimizeWrapper's jac or as the first stage of a GradChain"
            )
        f = CountedClosure(closure, "MeZO")
        originals = [p for g in self.param_groups for p in g["params"]]
        params = [torch.view_as_real(p) if p.is_complex() else p for p in originals]
        hs = [float(g["h"]) for g in self.param_groups for _ in g["params"]]
        rates = self._rates(originals)
        try:
            with torch.no_grad():
                loss = self._seed_step(f, params, hs, rates)
                self.estimates += 1
                if rates is not None and not f.nonfinite:
                    clamp_to_group_bounds(self.param_groups)  # the SGD update was applied in the walk
        finally:
            self.nfev += f.count
            self._last_nonfinite = f.nonfinite
        if f.nonfinite:
            warn_nonfinite_step("MeZO", f.nonfinite)
        return torch.tensor(loss, dtype=torch.float64)

    def _samples(
        self,
        f: Callable[[], float],
        params: list[torch.Tensor],
        hs: list[float],
        n: int,
        last_pass: Callable[[list[float]], After | None],
        backup: list[torch.Tensor] | None = None,
    ) -> tuple[float | None, list[float], list[tuple[int, float]]]:
        f0, side, drawn = super()._samples(f, params, hs, n, last_pass, backup)
        self.projected_grads = drawn
        return f0, side, drawn

    # ------------------------------------------------------------------ internals
    def _fills_grad(self) -> bool:
        plain = self.opt is None or is_plain_sgd(self.opt)
        if self.fill_grad is False and not plain:
            raise ValueError(
                f"MeZO: fill_grad=False needs opt=None or a plain torch.optim.SGD (momentum=0, weight_decay=0, "
                f"no step hooks), but the inner {type(self.opt).__name__} reads .grad"
            )
        if self.fill_grad is not None:
            return self.fill_grad
        return self._chained or not plain

    def _rates(self, originals: list[torch.Tensor]) -> list[float] | None:
        """Each tensor's signed SGD rate (``-lr``; ``+lr`` with ``maximize``), or ``None`` without ``opt``."""
        if self.opt is None:
            return None
        rate: dict[int, float] = {}
        for g in self.opt.param_groups:
            r = float(g["lr"]) * (1.0 if g.get("maximize", False) else -1.0)
            for p in g["params"]:
                rate[id(p)] = r
        return [rate[id(p)] for p in originals]

    def _seed_step(
        self, f: CountedClosure, params: list[torch.Tensor], hs: list[float], rates: list[float] | None
    ) -> float:
        n = self.n_samples_at(self.estimates)

        def last_pass(coefs: list[float]) -> After | None:
            if rates is None or n > 1 or f.nonfinite:
                return None
            alphas = [r * c for r, c in zip(rates, coefs)]
            return lambda i, sl, d: piece_of(params[i], sl).add_(d, alpha=alphas[i])

        f0, side, drawn = self._samples(f, params, hs, n, last_pass)
        if rates is not None and n > 1 and not f.nonfinite:
            done = [0]  # pieces updated, in order: a failed pass is finished before the error propagates
            with deferred_interrupts():
                try:
                    self._update(params, hs, rates, drawn, done)
                except BaseException:
                    self._update(params, hs, rates, drawn, done)
                    raise
        return f0 if f0 is not None else sum(side) / len(side)

    def _update(
        self,
        params: list[torch.Tensor],
        hs: list[float],
        rates: list[float],
        drawn: list[tuple[int, float]],
        done: list[int],
    ) -> None:
        """``p += rate·mean(D/h·d)`` over the samples, skipping the first ``done[0]`` pieces."""
        n, k = len(drawn), 0
        for seed, deriv in drawn:
            for i, sl, d in self.sampler.pieces(seed, params, self.sampler.sphere_scale(seed, params)):
                k += 1
                if k > done[0]:
                    piece_of(params[i], sl).add_(d, alpha=rates[i] * deriv / (hs[i] * n))
                    done[0] = k
