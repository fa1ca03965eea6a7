"""Randomized finite differences: RandomizedFDM and its presets SPSA, RDSA, GaussianSmoothing, MeZO.

Each sample draws a random direction ``d`` over all parameters (``E[d dᵀ] = I``, see
:mod:`~torchzero_bridge.zeroth_order.directions`), moves group ``g`` by ``t·h_g·d_g`` for the
formula's stencil points ``t``, and combines the losses into the directional derivative
``D ≈ Σ_g h_g ∇_g f · d_g``; the estimate for group ``g`` is ``D·d_g / h_g`` averaged over the
samples. With one ``h`` for all groups this is the usual ``(∇f·d) d``.

Closure runs per step for ``k = n_samples``: ``forward2``/``backward2`` ``k + 1``,
``central3`` ``2k``, ``forward3``/``backward3`` ``2k + 1``, ``central5`` ``4k``.
Loss returned: ``f(x)`` when the formula evaluates it, else the mean of the evaluations at
``x ± h·d`` over all samples (an O(h²) approximation of ``f(x)``).

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

from torchzero_bridge._checks import check_int, check_positive
from torchzero_bridge.zeroth_order.directions import DirectionSampler
from torchzero_bridge.zeroth_order.estimators.base import Block, GradientEstimator, ParamsArg
from torchzero_bridge.zeroth_order.estimators.formulas import Formula, get_formula
from torchzero_bridge.zeroth_order.inner import OptimizerSpec

__all__ = ["RDSA", "SPSA", "GaussianSmoothing", "MeZO", "RandomizedFDM"]


class RandomizedFDM(GradientEstimator):
    """Finite differences along random directions, averaged over ``n_samples``.

    See the module docstring for the estimate, the evaluation counts and the returned loss.
    Directions are drawn from one sample seed each (from ``seed``/``generator``), so a run
    is reproducible and ``state_dict`` round-trips the generator.

    Args:
        params: tensors or param-group dicts (per-group option ``h``), or ``None`` for an
            unbound estimator (``jac`` of MinimizeWrapper, first stage of a GradChain).
        h: the step along each direction.
        n_samples: directions per estimate.
        formula: ``"forward2"``, ``"backward2"``, ``"central3"`` (default), ``"forward3"``,
            ``"backward3"`` or ``"central5"``.
        distribution: ``"rademacher"`` (default), ``"gaussian"``, ``"uniform"`` or ``"sphere"``.
        opt: inner optimizer factory, e.g. ``lambda p: torch.optim.Adam(p, lr=1e-2)``.
        seed: seed of the directions (``None``: drawn from torch's global generator).
        generator: draw the sample seeds from this generator instead.

    Raises:
        ValueError: unknown formula or distribution (the valid ones are listed), ``h <= 0``,
            ``n_samples < 1``.

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
        distribution: str = "rademacher",
        opt: OptimizerSpec | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        name = type(self).__name__
        self.formula: Formula = get_formula(formula, name)
        self.n_samples = check_int(n_samples, "n_samples", name)
        self.sampler = DirectionSampler(distribution, name)
        super().__init__(
            params, {"h": check_positive(h, "h", name)}, opt=opt, seed=seed, generator=generator, randomized=True
        )

    @property
    def distribution(self) -> str:
        """Name of the direction distribution."""
        return self.sampler.distribution

    def _estimate(self, f: Callable[[], float], blocks: list[Block]) -> float:
        params, grads, hs = _flatten(blocks)
        formula = self.formula
        x0 = [p.clone() for p in params]
        f0 = f() if formula.uses_center else None
        side: list[float] = []
        for g in grads:
            g.zero_()
        try:
            for _ in range(self.n_samples):
                dirs = self.sampler.sample(self._draw_seed(), params)
                deriv = formula.center * f0 if f0 is not None else 0.0
                for t, c in formula.points:
                    for p, x, d, h in zip(params, x0, dirs, hs):
                        p.copy_(x).add_(d, alpha=t * h)
                    value = f()
                    deriv += c * value
                    if f0 is None and abs(t) == 1:
                        side.append(value)
                for g, d, h in zip(grads, dirs, hs):
                    g.add_(d, alpha=deriv / h)
                del dirs, d  # one stored direction at a time
        finally:
            for p, x in zip(params, x0):
                p.copy_(x)
        return _finish(grads, self.n_samples, f0, side)


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
    ) -> None:
        super().__init__(
            params,
            h=h,
            n_samples=n_samples,
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
    ) -> None:
        super().__init__(
            params,
            h=h,
            n_samples=n_samples,
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
    ) -> None:
        super().__init__(
            params,
            h=h,
            n_samples=n_samples,
            formula=formula,
            distribution="gaussian",
            opt=opt,
            seed=seed,
            generator=generator,
        )


class MeZO(RandomizedFDM):
    """Memory-efficient SPSA: the direction is regenerated from its seed, never stored.

    The parameters are moved in place (``x → x + h d → x - h d → x``) and each move
    regenerates ``d`` one tensor at a time, so the extra memory is one temporary tensor the
    size of the largest parameter, not a copy of all parameters. The price: the parameters
    are restored by adding the direction back, exact up to floating-point rounding.
    With the same ``seed`` the estimate equals :class:`RandomizedFDM`'s with the same
    options (``distribution="rademacher"`` gives :class:`SPSA`'s), up to that rounding.

    Evaluation counts and returned loss as in :class:`RandomizedFDM` (default ``central3``:
    2 runs per sample, loss = mean of ``f(x ± h d)``).

    Args:
        params: tensors or param-group dicts (per-group option ``h``), or ``None``.
        h: the perturbation size.
        n_samples: directions per estimate.
        formula: finite-difference formula (see :class:`RandomizedFDM`).
        distribution: ``"rademacher"`` (default), ``"gaussian"``, ``"uniform"`` or ``"sphere"``.
        opt: inner optimizer factory.
        seed: seed of the directions.
        generator: draw the sample seeds from this generator instead.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import MeZO
        >>> w = torch.ones(1000, requires_grad=True)
        >>> mezo = MeZO([w], h=1e-3, seed=0, opt=lambda p: torch.optim.SGD(p, lr=1e-3))
        >>> loss = mezo.step(lambda backward=True: (w ** 2).sum())
        >>> mezo.nfev
        2
    """

    def __init__(
        self,
        params: ParamsArg | None = None,
        *,
        h: float = 1e-3,
        n_samples: int = 1,
        formula: str = "central3",
        distribution: str = "rademacher",
        opt: OptimizerSpec | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            params,
            h=h,
            n_samples=n_samples,
            formula=formula,
            distribution=distribution,
            opt=opt,
            seed=seed,
            generator=generator,
        )

    def _estimate(self, f: Callable[[], float], blocks: list[Block]) -> float:
        params, grads, hs = _flatten(blocks)
        formula = self.formula
        f0 = f() if formula.uses_center else None
        side: list[float] = []
        for g in grads:
            g.zero_()
        for _ in range(self.n_samples):
            seed = self._draw_seed()
            scale = self.sampler.sphere_scale(seed, params)
            deriv = formula.center * f0 if f0 is not None else 0.0
            at = 0
            try:
                for t, c in formula.points:
                    self._move(seed, scale, params, hs, t - at)
                    at = t
                    value = f()
                    deriv += c * value
                    if f0 is None and abs(t) == 1:
                        side.append(value)
            finally:
                self._move(seed, scale, params, hs, -at)
            self._accumulate(seed, scale, grads, [deriv / h for h in hs])
        return _finish(grads, self.n_samples, f0, side)

    def _accumulate(self, seed: int, scale: float, grads: list[torch.Tensor], coefs: list[float]) -> None:
        """Add ``coefs[i]·d_i`` to each gradient, regenerating ``d`` one tensor at a time."""
        self.sampler.foreach(seed, grads, lambda i, d: grads[i].add_(d, alpha=coefs[i]), scale)

    def _move(self, seed: int, scale: float, params: list[torch.Tensor], hs: list[float], by: int) -> None:
        """Add ``by·h·d`` to the parameters, regenerating ``d`` one tensor at a time."""
        if by != 0:
            self.sampler.foreach(seed, params, lambda i, d: params[i].add_(d, alpha=by * hs[i]), scale)


def _flatten(blocks: list[Block]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    params = [p for b in blocks for p in b.params]
    grads = [g for b in blocks for g in b.grads]
    hs = [b.h for b in blocks for _ in b.params]
    return params, grads, hs


def _finish(grads: list[torch.Tensor], n_samples: int, f0: float | None, side: list[float]) -> float:
    if n_samples > 1:
        for g in grads:
            g.div_(n_samples)
    if f0 is not None:
        return f0
    return sum(side) / len(side)
