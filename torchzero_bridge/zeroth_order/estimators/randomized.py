"""Randomized finite differences: RandomizedFDM and its presets SPSA, RDSA, GaussianSmoothing.

Each sample draws a random direction ``d`` over all parameters (``E[d dᵀ] = I``, see
:mod:`~torchzero_bridge.zeroth_order.directions`), moves group ``g`` by ``t·h_g·d_g`` for the
formula's stencil points ``t``, and combines the losses into the directional derivative
``D ≈ Σ_g h_g ∇_g f · d_g``; the estimate for group ``g`` is ``D·d_g / h_g`` averaged over the
samples. With one ``h`` for all groups this is the usual ``(∇f·d) d``.

Closure runs per step for ``k`` samples (``n_samples``, or ``n_samples_schedule(t)`` at the
estimator's ``t``-th estimate, 0-based): ``forward2``/``backward2`` ``k + 1``,
``central3`` ``2k``, ``forward3``/``backward3`` ``2k + 1``, ``central5`` ``4k``.
Loss returned: ``f(x)`` when the formula evaluates it, else the mean of the evaluations at
``x ± h·d`` over all samples (an O(h²) approximation of ``f(x)``).

Memory and time: the parameters are moved in place, one piece at a time, along a direction
regenerated from its seed (see :mod:`~torchzero_bridge.zeroth_order.estimators.walk`), and come
back to their start bit for bit in every dtype, also when the closure raises or SIGINT arrives.
Beyond ``.grad`` nothing parameter-sized is held: no copy of the parameters, no stored
direction, just scratch pieces of at most ``directions.CHUNK`` entries. With one sample
(``n_samples=1``) ``.grad`` itself holds the start until the way back, which copies it back and
writes the estimate in its place; with more, three bytes are kept per entry whose arithmetic
way back would round wrong. Each sample makes one pass over the parameters per
stencil point and one to come back (which also adds the sample into ``.grad``); ``"sphere"``
adds one more for its norm. :class:`MeZO` also drops the ``.grad`` buffer.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import SPSA
    >>> w = torch.ones(4, dtype=torch.float64, requires_grad=True)
    >>> spsa = SPSA([w], h=1e-3, seed=0, opt=lambda p: torch.optim.SGD(p, lr=0.1))
    >>> loss = spsa.step(lambda backward=True: (w ** 2).sum())
    >>> spsa.nfev
    2
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from torchzero_bridge._checks import check_positive
from torchzero_bridge.zeroth_order.directions import piece_of
from torchzero_bridge.zeroth_order.estimators.base import Block, GradientEstimator, ParamsArg
from torchzero_bridge.zeroth_order.estimators.formulas import Formula, get_formula
from torchzero_bridge.zeroth_order.estimators.walk import After, Walk
from torchzero_bridge.zeroth_order.inner import OptimizerSpec
from torchzero_bridge.zeroth_order.schedules import SizeSchedule
from torchzero_bridge.zeroth_order.smooth_directions import Distribution, make_sampler

__all__ = ["RDSA", "SPSA", "GaussianSmoothing", "RandomizedFDM"]


class RandomizedFDM(GradientEstimator):
    """Finite differences along random directions, averaged over ``n_samples``.

    See the module docstring for the estimate, the evaluation counts and the returned loss.
    Directions are drawn from one sample seed each (from ``seed``/``generator``), so a run
    is reproducible and ``state_dict`` round-trips the generator.

    Args:
        params: tensors or param-group dicts (per-group option ``h``), or ``None`` for an
            unbound estimator (``jac`` of MinimizeWrapper, first stage of a GradChain).
        h: the step along each direction.
        n_samples: directions per estimate (the first one's, with ``n_samples_schedule``).
        formula: ``"forward2"``, ``"backward2"``, ``"central3"`` (default), ``"forward3"``,
            ``"backward3"`` or ``"central5"``.
        distribution: ``"rademacher"`` (default), ``"gaussian"``, ``"uniform"`` or ``"sphere"``,
            or smoothed directions (``smooth_directions.Smoothed``/``AR1``; an ``AR1`` chain advances
            once per sample and costs one more pass over the parameters per sample).
        opt: inner optimizer factory, e.g. ``lambda p: torch.optim.Adam(p, lr=1e-2)``.
        seed: seed of the directions (``None``: drawn from torch's global generator).
        generator: draw the sample seeds from this generator instead.
        n_samples_schedule: directions per estimate over time: ``None`` (always ``n_samples``),
            ``"linear"`` (``n_samples + t`` up to ``4 * n_samples``), ``"geometric"`` (doubling every 10
            estimates up to ``8 * n_samples``) or a callable ``t -> int`` of the 0-based estimate index
            ``t`` (:attr:`estimates`, kept by ``state_dict``); see :mod:`~torchzero_bridge.zeroth_order.schedules`.

    Raises:
        ValueError: unknown formula or distribution (the valid ones are listed), ``h <= 0``,
            ``n_samples < 1``, unknown schedule name; at a step, a scheduled count below 1.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import RandomizedFDM
        >>> w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        >>> est = RandomizedFDM([w], n_samples=4, formula="forward2", distribution="sphere", seed=1)
        >>> loss = est.step(lambda backward=True: ((w - 1) ** 2).sum())
        >>> est.nfev, loss.item()
        (5, 3.0)
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
        n_samples_schedule: SizeSchedule = None,
    ) -> None:
        name = type(self).__name__
        self.formula: Formula = get_formula(formula, name)
        self.n_samples = self._schedule_samples(n_samples, n_samples_schedule)
        self.sampler = make_sampler(distribution, name)
        super().__init__(
            params, {"h": check_positive(h, "h", name)}, opt=opt, seed=seed, generator=generator, randomized=True
        )

    @property
    def distribution(self) -> Distribution:
        """The direction distribution (a name, ``Smoothed`` or ``AR1``)."""
        return self.sampler.distribution

    def _estimate(self, f: Callable[[], float], blocks: list[Block]) -> float:
        params, grads, hs = _flatten(blocks)
        n = self.n_samples_at(self.estimates)
        # with one sample the gradient buffers are free until the way back: they hold the start
        # of the walk (no simulated chain, no kept entries), and each piece's estimate replaces it
        backup = grads if n == 1 and all(map(_can_hold, grads, params)) else None
        if backup is None:
            for g in grads:
                g.zero_()

        def accumulate(coefs: list[float]) -> After:
            if backup is not None:
                return lambda i, sl, d: piece_of(grads[i], sl).zero_().add_(d, alpha=coefs[i])
            return lambda i, sl, d: piece_of(grads[i], sl).add_(d, alpha=coefs[i])

        f0, side, _ = self._samples(f, params, hs, n, accumulate, backup)
        return _finish(grads, n, f0, side)

    def _samples(
        self,
        f: Callable[[], float],
        params: list[torch.Tensor],
        hs: list[float],
        n: int,
        last_pass: Callable[[list[float]], After | None],
        backup: list[torch.Tensor] | None = None,
    ) -> tuple[float | None, list[float], list[tuple[int, float]]]:
        """Evaluate ``n`` samples' stencils, walking the parameters there and back exactly.

        ``last_pass(coefs)`` gives the work to do on each sample's way back, where ``coefs[i]``
        is ``D / h_i`` (``D`` the sample's directional difference); ``backup``: buffers that
        hold the start during a walk (see :class:`Walk`; one sample only). Returns ``f(x)``
        (``None`` when the formula does not evaluate it), the side values and the ``(seed, D)`` pairs.
        """
        formula = self.formula
        f0 = f() if formula.uses_center else None
        side: list[float] = []
        drawn: list[tuple[int, float]] = []
        points = [t for t, _ in formula.points]
        for _ in range(n):
            seed = self._draw_seed()
            walk = Walk(params, hs, points, self.sampler, seed, self.sampler.sphere_scale(seed, params), backup)
            deriv = formula.center * f0 if f0 is not None else 0.0
            try:
                for t, c in formula.points:
                    walk.advance()
                    value = f()
                    deriv += c * value
                    if f0 is None and abs(t) == 1:
                        side.append(value)
            except BaseException:
                walk.finish()
                raise
            walk.finish(last_pass([deriv / h for h in hs]))
            self.sampler.commit(seed, params)  # an AR1 chain advances once per sample
            drawn.append((seed, deriv))
        return f0, side, drawn


class SPSA(RandomizedFDM):
    """Simultaneous perturbation stochastic approximation: Rademacher (±1) directions.

    ``central3`` (default) spends exactly 2 closure runs per sample and returns the mean of
    ``f(x + h d)`` and ``f(x - h d)`` as the loss (no extra run for ``f(x)``).

    Args:
        params: tensors or param-group dicts (per-group option ``h``), or ``None``.
        h: the perturbation size.
        n_samples: directions per estimate.
        formula: finite-difference formula (see :class:`RandomizedFDM`).
        opt: inner optimizer factory.
        seed: seed of the directions.
        generator: draw the sample seeds from this generator instead.
        n_samples_schedule: directions per estimate over time (see :class:`RandomizedFDM`).

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import SPSA
        >>> w = torch.zeros(2, requires_grad=True)
        >>> opt = SPSA([w], h=1e-2, seed=0, opt=lambda p: torch.optim.Adam(p, lr=0.1))
        >>> for _ in range(100):
        ...     loss = opt.step(lambda backward=True: ((w - 1) ** 2).sum())
        >>> bool(loss < 0.05)
        True
    """

    def __init__(
        self,
        params: ParamsArg | None = None,
        *,
        h: float = 1e-3,
        n_samples: int = 1,
        formula: str = "central3",
        opt: OptimizerSpec | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        n_samples_schedule: SizeSchedule = None,
    ) -> None:
        super().__init__(
            params,
            h=h,
            n_samples=n_samples,
            n_samples_schedule=n_samples_schedule,
            formula=formula,
            distribution="rademacher",
            opt=opt,
            seed=seed,
            generator=generator,
        )


class RDSA(RandomizedFDM):
    """Random-direction stochastic approximation: Gaussian directions.

    Same evaluation counts and returned loss as :class:`SPSA`.

    Args:
        params: tensors or param-group dicts (per-group option ``h``), or ``None``.
        h: the perturbation size.
        n_samples: directions per estimate.
        formula: finite-difference formula (see :class:`RandomizedFDM`).
        opt: inner optimizer factory.
        seed: seed of the directions.
        generator: draw the sample seeds from this generator instead.
        n_samples_schedule: directions per estimate over time (see :class:`RandomizedFDM`).

    Example:
        >>> from torchzero_bridge.zeroth_order import RDSA
        >>> RDSA(h=1e-3).distribution
        'gaussian'
    """

    def __init__(
        self,
        params: ParamsArg | None = None,
        *,
        h: float = 1e-3,
        n_samples: int = 1,
        formula: str = "central3",
        opt: OptimizerSpec | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        n_samples_schedule: SizeSchedule = None,
    ) -> None:
        super().__init__(
            params,
            h=h,
            n_samples=n_samples,
            n_samples_schedule=n_samples_schedule,
            formula=formula,
            distribution="gaussian",
            opt=opt,
            seed=seed,
            generator=generator,
        )


class GaussianSmoothing(RandomizedFDM):
    """Gradient of the Gaussian-smoothed loss: many Gaussian directions, forward differences.

    Defaults (``n_samples=100``, ``h=1e-2``, ``forward2``) spend ``n_samples + 1`` closure
    runs per step and return ``f(x)`` as the loss.

    Args:
        params: tensors or param-group dicts (per-group option ``h``), or ``None``.
        n_samples: directions per estimate.
        h: the smoothing radius.
        formula: finite-difference formula (see :class:`RandomizedFDM`).
        opt: inner optimizer factory.
        seed: seed of the directions.
        generator: draw the sample seeds from this generator instead.
        n_samples_schedule: directions per estimate over time (see :class:`RandomizedFDM`).

    Example:
        >>> from torchzero_bridge.zeroth_order import GaussianSmoothing
        >>> gs = GaussianSmoothing(n_samples=10)
        >>> gs.formula.evaluations(gs.n_samples)
        11
    """

    def __init__(
        self,
        params: ParamsArg | None = None,
        *,
        n_samples: int = 100,
        h: float = 1e-2,
        formula: str = "forward2",
        opt: OptimizerSpec | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        n_samples_schedule: SizeSchedule = None,
    ) -> None:
        super().__init__(
            params,
            h=h,
            n_samples=n_samples,
            n_samples_schedule=n_samples_schedule,
            formula=formula,
            distribution="gaussian",
            opt=opt,
            seed=seed,
            generator=generator,
        )


def _flatten(blocks: list[Block]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    params = [p for b in blocks for p in b.params]
    grads = [g for b in blocks for g in b.grads]
    hs = [b.h for b in blocks for _ in b.params]
    return params, grads, hs


def _can_hold(buffer: torch.Tensor, t: torch.Tensor) -> bool:
    """Whether ``buffer`` can hold ``t``'s values piece by piece: same layout, separate memory."""
    return buffer.stride() == t.stride() and buffer.untyped_storage().data_ptr() != t.untyped_storage().data_ptr()


def _finish(grads: list[torch.Tensor], n_samples: int, f0: float | None, side: list[float]) -> float:
    if n_samples > 1:
        for g in grads:
            g.div_(n_samples)
    if f0 is not None:
        return f0
    return sum(side) / len(side)
