"""ForwardGradient: exact directional derivatives by forward-mode autodiff, times the direction.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import ForwardGradient
    >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> fg = ForwardGradient([w], distribution="rademacher", seed=0)
    >>> loss = fg.step(lambda backward=True: (w ** 2).sum())
    >>> d = w.grad.sign()                      # the direction drawn
    >>> torch.allclose(w.grad, d * (2 * w.detach() * d).sum())
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from torchzero_bridge._preload import preload
from torchzero_bridge.core.closure import ClosureAdapter, CountedClosure, loss_to_float
from torchzero_bridge.errors import ClosureError
from torchzero_bridge.zeroth_order.estimators.base import Block, GradientEstimator, ParamsArg
from torchzero_bridge.zeroth_order.inner import OptimizerSpec
from torchzero_bridge.zeroth_order.schedules import SizeSchedule
from torchzero_bridge.zeroth_order.smooth_directions import Distribution, make_sampler

__all__ = ["ForwardGradient"]


class ForwardGradient(GradientEstimator):
    """Forward gradient: ``(∇f · d) d`` with ``∇f · d`` computed exactly by forward-mode AD.

    Each sample attaches the direction ``d`` as the tangent of the parameters
    (``torch.autograd.forward_ad`` dual tensors, written into the parameters in place) and
    runs the closure once without backward; the loss's tangent is ``∇f · d``. No backward
    pass and no autograd graph: one closure run per sample, and the loss returned is the
    exact ``f(x)`` (the primal of the first run).

    The closure must be able to run without calling ``backward``: one that accepts
    ``backward`` (``def closure(backward=True)``), or a closure object with ``.model`` and
    ``.loss(model)`` such as :class:`~torchzero_bridge.BatchObjective`. Every operation in
    it needs a forward-mode derivative (all standard torch operations have one).

    Args:
        params: tensors or param-group dicts, or ``None`` for an unbound estimator (first
            stage of a GradChain).
        n_samples: directions per estimate (the first one's, with ``n_samples_schedule``).
        distribution: ``"gaussian"`` (default), ``"rademacher"``, ``"uniform"`` or ``"sphere"``, or
            ``smooth_directions.Smoothed``/``AR1`` (the ``AR1`` chain advances once per sample).
        opt: inner optimizer factory, e.g. ``lambda p: torch.optim.Adam(p, lr=1e-2)``.
        seed: seed of the directions.
        generator: draw the sample seeds from this generator instead.
        n_samples_schedule: directions per estimate over time (see :class:`RandomizedFDM`).

    Raises:
        ValueError: unknown distribution, ``n_samples < 1``, unknown schedule name; at a step, a
            scheduled count below 1.
        TypeError: at ``step``, a closure that cannot skip its backward pass.

    Example:
        >>> import torch
        >>> import torchzero_bridge as tzb
        >>> model = torch.nn.Linear(3, 1)
        >>> X, y = torch.randn(16, 3), torch.randn(16, 1)
        >>> batch = tzb.BatchObjective(model, lambda m, X, y: ((m(X) - y) ** 2).mean(), X, y)
        >>> fg = tzb.ForwardGradient(model.parameters(), n_samples=2, seed=0)
        >>> loss = fg.step(batch)
        >>> fg.nfev
        2
    """

    def __init__(
        self,
        params: ParamsArg | None = None,
        *,
        n_samples: int = 1,
        distribution: Distribution = "gaussian",
        opt: OptimizerSpec | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        n_samples_schedule: SizeSchedule = None,
    ) -> None:
        self.n_samples = self._schedule_samples(n_samples, n_samples_schedule)
        self.sampler = make_sampler(distribution, "ForwardGradient")
        super().__init__(params, {}, opt=opt, seed=seed, generator=generator, randomized=True)
        preload("torch._decomp.decompositions_for_jvp")  # the first forward-mode pass imports it; not inside a step

    @property
    def distribution(self) -> Distribution:
        """The direction distribution (a name, ``Smoothed`` or ``AR1``)."""
        return self.sampler.distribution

    def make_scipy_jac(self, objective: Any) -> Callable[..., np.ndarray]:
        """Not available: forward-mode AD needs the model, which scipy's flat vector hides.

        Raises:
            TypeError: always; use ``jac=True`` (exact autograd) or a finite-difference estimator.
        """
        raise TypeError(
            "ForwardGradient cannot be MinimizeWrapper's jac: it differentiates through the model with "
            "forward-mode AD, which the flat-vector objective does not expose; use jac=True for exact "
            "autograd gradients, or FDM/SPSA for derivative-free ones"
        )

    def _estimate(self, f: Callable[[], float], blocks: list[Block]) -> float:
        if not isinstance(f, CountedClosure):  # pragma: no cover - only the optimizer path calls this
            raise TypeError("ForwardGradient needs the closure itself")
        adapter = f.adapter
        if not adapter.has_graph:
            raise TypeError(
                "ForwardGradient needs a closure that can skip its backward pass: accept it "
                "(def closure(backward=True): ... if backward: loss.backward()) or pass a closure object "
                "with .model and .loss(model), such as torchzero_bridge.BatchObjective"
            )
        reals = [p for b in blocks for p in b.params]
        tensors = [t for b in blocks for t in b.tensors]
        grads = [g for b in blocks for g in b.grads]
        for g in grads:
            g.zero_()
        loss = float("nan")
        n = self.n_samples_at(self.estimates)
        for k in range(n):
            dirs = self.sampler.draw(self._draw_seed(), reals)
            value, deriv = _jvp(adapter, tensors, dirs)
            f.record.count(value if math.isfinite(deriv) else math.nan)  # a non-finite derivative counts too
            if k == 0:
                loss = value
            for g, d in zip(grads, dirs):
                g.add_(d, alpha=deriv)
        if n > 1:
            for g in grads:
                g.div_(n)
        return loss


def _jvp(adapter: ClosureAdapter, tensors: list[torch.Tensor], dirs: list[torch.Tensor]) -> tuple[float, float]:
    """``(f(x), ∇f(x)·d)`` from one forward pass with dual parameters."""
    with fwAD.dual_level(), torch.no_grad():
        for t, d in zip(tensors, dirs):
            tangent = torch.view_as_complex(d) if t.is_complex() else d
            t.copy_(fwAD.make_dual(t.detach(), tangent))
        out = adapter.loss_tensor()
        if not isinstance(out, torch.Tensor):
            raise ClosureError(
                f"ForwardGradient needs the closure to return a tensor loss computed from the parameters; "
                f"got {type(out).__name__}"
            )
        primal, tangent = fwAD.unpack_dual(out)
        value = loss_to_float(primal)
        deriv = 0.0 if tangent is None else float(tangent.reshape(()).real)
    return value, deriv
