"""Hessian-vector products and dense Hessians of an :class:`~torchzero_bridge.core.objective.Objective`.

Three strategies, chosen once per objective (``hvp_method``):

* ``"autograd"``: double backward through a kept graph. A closure that accepts ``backward``
  gives value, gradient and graph in one run (the graph is kept with each gradient
  evaluation while a Hessian method runs); a gngdb-style closure object is called for the
  value and gradient, and the graph is built from its ``.loss(model)`` only at points where a
  product is asked for.
* ``"forward"``/``"central"``: finite differences of gradients (autograd closure runs, or the
  gradients of the estimator the objective was constructed with, its ``gradient_source``).

The strategy is chosen here once, when the objective is built: ``"autograd"`` for a closure
that cannot give its loss with a graph falls back to ``"central"`` with a warning.

Example:
    >>> import numpy as np, torch
    >>> from torchzero_bridge.core.flat import FlatParams
    >>> from torchzero_bridge.core.objective import Objective
    >>> w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    >>> def closure(backward=True):
    ...     loss = (w ** 3).sum()
    ...     if backward:
    ...         w.grad = None
    ...         loss.backward()
    ...     return loss
    >>> obj = Objective(FlatParams([w]), closure, uses_hessian=True)
    >>> obj.hessp(np.array([1.0, 2.0]), np.array([1.0, 0.0])).tolist()
    [6.0, 0.0]
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.closure import loss_to_float
from torchzero_bridge.core.point import Point

if TYPE_CHECKING:
    from torchzero_bridge.core.closure import ClosureAdapter
    from torchzero_bridge.core.flat import FlatParams
    from torchzero_bridge.core.record import EvalRecord

__all__ = ["HVP_METHODS", "HessianProducts", "HvpMethod", "LatestGradients"]

HVP_METHODS = ("autograd", "forward", "central")
HvpMethod = Literal["autograd", "forward", "central"]


class LatestGradients:
    """A gradient source ``jac(x)`` that remembers its two most recent gradients.

    A finite-difference Hessian product asks for ``g(x)`` and ``g(x + h v)`` in turn, and
    ``g(x)`` must survive the probe. Each call returns a new array.

    Example:
        >>> calls = []
        >>> g = LatestGradients(lambda x: calls.append(1) or 2 * x)
        >>> g(np.ones(2)).tolist(), g(np.zeros(2)).tolist(), g(np.ones(2)).tolist(), len(calls)
        ([2.0, 2.0], [0.0, 0.0], [2.0, 2.0], 2)
    """

    def __init__(self, jac: Callable[..., np.ndarray]) -> None:
        self.jac = jac
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __call__(self, x: np.ndarray, *args: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        key = x.tobytes()
        cache = self._cache
        if key in cache:
            cache.move_to_end(key)
        else:
            cache[key] = np.array(self.jac(x, *args), dtype=np.float64)
            if len(cache) > 2:
                cache.popitem(last=False)
        return cache[key].copy()


class HessianProducts:
    """The second-derivative half of :class:`~torchzero_bridge.core.objective.Objective` (a mixin)."""

    flat: FlatParams
    adapter: ClosureAdapter
    record: EvalRecord
    hvp_method: HvpMethod
    graph_grads: bool
    _silent: bool
    gradient_source: Callable[[np.ndarray], np.ndarray] | None
    _diff_idx: list[int]
    _diff_params: list[torch.Tensor]

    if TYPE_CHECKING:  # provided by Objective

        def _evaluate(self, x: Any, need_grad: bool, graph: bool = False, optional: bool = False) -> Point: ...
        def _collect_grad(self, required: bool = True) -> np.ndarray | None: ...
        def _drop_graph_of(self, old: Point | None) -> None: ...
        def _copy_to_free(self, x: np.ndarray) -> np.ndarray: ...

    def _choose_hvp(self, hvp_method: str, uses_hessian: bool) -> None:
        """Fix the product strategy once (``adapter`` must be set); see the module docstring.

        Raises:
            ValueError: unknown ``hvp_method``.
        """
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"hvp_method: expected one of {HVP_METHODS}, got {hvp_method!r}")
        if hvp_method == "autograd" and uses_hessian and not self.adapter.has_graph:
            warn_user(
                "exact Hessian-vector products need a closure that accepts `backward` "
                "(def closure(backward=True)) or a closure object with .model and .loss(model); "
                "this closure has neither, so hvp_method='central' finite differences are used"
            )
            hvp_method = "central"
        self.hvp_method = hvp_method  # type: ignore[assignment]
        self.graph_grads = uses_hessian and hvp_method == "autograd" and not self.adapter.is_object

    def hessp(self, x: np.ndarray, p: np.ndarray, *args: Any) -> np.ndarray:
        """Hessian at ``x`` times vector ``p``."""
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        self.record.nhev += 1
        if self.hvp_method == "autograd":
            return self._graph_hvp(self._graph_point(x), p)
        return self._fd_hvp(np.asarray(x, dtype=np.float64), p)

    def hess(self, x: np.ndarray, *args: Any) -> np.ndarray:
        """Dense Hessian at ``x`` (``n`` Hessian-vector products; for methods that need it)."""
        n = self.flat.n
        if self.hvp_method == "autograd":
            e = self._graph_point(x)
            self.record.nhev += 1
            H = self._graph_hess(e)
        else:
            H = np.empty((n, n))
            xx = np.asarray(x, dtype=np.float64)
            unit = np.zeros(n)
            self.record.nhev += 1
            for i in range(n):
                unit[i] = 1.0
                H[:, i] = self._fd_hvp(xx, unit)
                unit[i] = 0.0
            H = 0.5 * (H + H.T)
        policy = self.record.nonfinite
        if not np.all(np.isfinite(H)) and policy != "pass":  # the non-finite policy covers it too
            if policy == "raise":
                raise FloatingPointError("the Hessian at the point is not finite")
            H = np.zeros_like(H)  # "inf": like the zero gradient at a non-finite loss
        return H

    def _graph_point(self, x: Any) -> Point:
        """The point at ``x`` with an autograd graph for products.

        A closure that accepts ``backward`` gives value, gradient and graph in one run. A
        closure object is called for the value and gradient (if not known yet), and the graph
        is then built from its ``.loss(model)``: that call is not a closure run.
        """
        if not self.adapter.is_object:
            return self._evaluate(x, True, graph=True)
        e = self._evaluate(x, True)
        if e.graph is None:
            self._load(e)
            _, _, e.graph = self._run_graph()
        return e

    def _run_graph(self) -> tuple[float, np.ndarray, tuple[list[torch.Tensor], list[int]]]:
        loss = self.adapter.graph()
        f = loss_to_float(loss)
        with torch.enable_grad():
            gs = torch.autograd.grad(loss, self._diff_params, create_graph=True, allow_unused=True)
        full: list[torch.Tensor | None] = [None] * len(self.flat.params)
        outs: list[torch.Tensor] = []
        idx: list[int] = []
        for k, g in zip(self._diff_idx, gs):
            if g is None:
                continue
            full[k] = g.detach()
            if g.requires_grad:
                outs.append(torch.view_as_real(g) if g.is_complex() else g)
                idx.append(k)
        return f, self.flat.flatten(full), (outs, idx)

    def _load(self, e: Point) -> None:
        """Put point ``e`` back into the parameters, which its graph's saved tensors alias."""
        if e.version != self.flat.version:
            self.flat.write(e.x, silent=self._silent)
            e.version = self.flat.version

    def _graph_hvp(self, e: Point, v: np.ndarray) -> np.ndarray:
        self._load(e)
        outs, idx = e.graph  # type: ignore[misc]
        if not outs:
            return np.zeros(self.flat.n)
        pieces = self.flat.unflatten(v)
        with torch.enable_grad():
            res = torch.autograd.grad(
                outs, self._diff_params, grad_outputs=[pieces[k] for k in idx], retain_graph=True, allow_unused=True
            )
        return self._scatter(res)

    def _graph_hess(self, e: Point) -> np.ndarray:
        self._load(e)
        outs, idx = e.graph  # type: ignore[misc]
        n = self.flat.n
        if not outs:
            return np.zeros((n, n))
        eye = torch.eye(n, dtype=torch.float64)
        batched = []
        for k in idx:
            a, b = self.flat.offsets[k], self.flat.offsets[k + 1]
            o = outs[idx.index(k)]
            batched.append(eye[:, a:b].reshape((n, *o.shape)).to(device=o.device, dtype=o.dtype))
        try:
            with torch.enable_grad():
                res = torch.autograd.grad(
                    outs,
                    self._diff_params,
                    grad_outputs=batched,
                    retain_graph=True,
                    allow_unused=True,
                    is_grads_batched=True,
                )
            H = np.empty((n, n))
            for row in range(n):
                H[row] = self._scatter([None if r is None else r[row] for r in res])
        except RuntimeError:  # an op without a batching rule: one product per column
            H = np.stack([self._graph_hvp(e, eye[i].numpy()) for i in range(n)])
        return 0.5 * (H + H.T)

    def _scatter(self, res: Any) -> np.ndarray:
        full: list[torch.Tensor | None] = [None] * len(self.flat.params)
        for k, r in zip(self._diff_idx, res):
            full[k] = r
        return self.flat.flatten(full)  # a new array each call

    def _fd_hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        vnorm = float(np.linalg.norm(v))
        if vnorm == 0.0:
            return np.zeros_like(v)
        xnorm = float(np.linalg.norm(x))
        source = self.gradient_source
        probe = self._grad_probe if source is None else source
        if source is not None:
            self.record.ngev += 1 if self.hvp_method == "forward" else 2  # the estimator's gradients at the probes
        if self.hvp_method == "forward":
            h = math.sqrt(self.flat.eps) * (1.0 + xnorm) / vnorm
            g0 = self._evaluate(x, True).g if source is None else source(x)  # the solver's own, not counted
            g1 = probe(x + h * v)
            return (g1 - g0) / h
        h = self.flat.eps ** (1.0 / 3.0) * (1.0 + xnorm) / vnorm
        g1 = probe(x + h * v)
        g2 = probe(x - h * v)
        return (g1 - g2) / (2.0 * h)

    def _grad_probe(self, y: np.ndarray) -> np.ndarray:
        """Gradient at a finite-difference probe point, outside the memo."""
        record = self.record
        record.check_deadline()
        self.flat.write(y, silent=self._silent)
        f = self.adapter.value_and_backward()
        record.nfev += 1
        record.ngev += 1
        g: np.ndarray | None = self._collect_grad()
        if not math.isfinite(f):
            record.treat(f)  # "raise" raises
            g = record.treat_gradient(g)  # "inf": a zero gradient
        elif record.improves(f):
            old = record.state["best_x"]
            record.keep(Point(self._copy_to_free(y), f, g, None), f)
            self._drop_graph_of(old)
        return g  # type: ignore[return-value]
