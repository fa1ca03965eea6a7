"""Objective: a user's closure seen by a solver as ``fun``/``grad``/``hessp``/``hess`` on float64 vectors.

Every evaluation is memoized on a copy of ``x``: asking for the value and then the gradient
at the same point runs the closure once. Counters mean what scipy's mean: ``nfev`` counts
closure runs, ``ngev`` the gradients a solver asked for (each call of :meth:`grad` or
:meth:`fun_and_grad`, as scipy counts ``njev``; finite-difference Hessian products count the
gradients they take at their probes), ``nhev`` the Hessian(-vector) products. A gradient
computed along with a value that no solver asked for is not counted. Counters, the best
finite point, the non-finite policy, the deadline and progress are kept in one
:class:`~torchzero_bridge.core.record.EvalRecord` (:attr:`Objective.record`).

A solver is handed the method that fits it, chosen once: :meth:`Objective.fun` (value with
the gradient computed along, for gradient solvers), :meth:`Objective.value` (value only), or
:meth:`Objective.global_fun` for a global solver whose local searches use exact gradients:
value-only (annealing visits, sampling points, population members run no backward pass)
except inside ``with objective.local_search():``.

Hessian-vector products (``hvp_method``: ``"autograd"``, ``"forward"``, ``"central"``) are
described in :mod:`torchzero_bridge.core.hessian`.

Example:
    >>> import numpy as np, torch
    >>> from torchzero_bridge.core.flat import FlatParams
    >>> from torchzero_bridge.core.objective import Objective
    >>> w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    >>> def closure(backward=True):
    ...     loss = ((w - 1.0) ** 2).sum()
    ...     if backward:
    ...         w.grad = None
    ...         loss.backward()
    ...     return loss
    >>> obj = Objective(FlatParams([w]), closure)
    >>> f, g = obj.fun_and_grad(np.zeros(2))
    >>> f, g.tolist(), obj.nfev
    (2.0, [-2.0, -2.0], 1)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from torchzero_bridge.core.batch import BatchObjective
from torchzero_bridge.core.closure import ClosureAdapter
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.hessian import HVP_METHODS, HessianProducts, HvpMethod, LatestGradients
from torchzero_bridge.core.point import Point
from torchzero_bridge.core.record import NONFINITE_POLICIES, EvalRecord, NonFinitePolicy, StopSolve
from torchzero_bridge.errors import MissingGradientError

__all__ = ["HVP_METHODS", "NONFINITE_POLICIES", "NonFinitePolicy", "Objective", "StopSolve"]


class Objective(HessianProducts):
    """Memoized, counted view of a closure for solvers working on float64 vectors.

    Args:
        flat: the parameter layout.
        closure: the user's closure (plain, ``backward``-aware, or gngdb-style object).
        hvp_method: how Hessian-vector products are formed (see :mod:`~torchzero_bridge.core.hessian`).
        uses_hessian: the solver will ask for ``hessp``/``hess``; with
            ``hvp_method="autograd"`` every gradient evaluation then keeps its graph so
            products at that point need no second closure run.
        gradient_estimator: a gradient estimator (anything with ``make_scipy_jac``) whose
            gradients the solver uses: :attr:`gradient_source` is built from it, evaluating
            through :meth:`value`, and finite-difference Hessian products difference it.
        nonfinite: what the solver sees when the loss is NaN or infinite: ``"inf"``
            (default) reports ``+inf`` so line searches back off, ``"raise"`` raises
            ``FloatingPointError``, ``"pass"`` hands the value through unchanged.
        deadline: ``time.perf_counter()`` value after which evaluations raise
            :class:`StopSolve`.
        timeout: the timeout in seconds (for the stop message).
        on_eval: called with each new loss value (progress bars, logging).
        on_evals: called once with all the losses of a batched evaluation (:meth:`values`)
            when they are all finite, instead of ``on_eval`` once per row.
        population: what evaluates populations for :meth:`values` instead of the closure
            (an object with ``evaluate(flat, X)``, e.g. a ``RemoteEvaluator`` on an executor).
        start: the solve's start point; ``record.start_seen`` says whether the solver evaluated it.

    Attributes:
        record: the :class:`~torchzero_bridge.core.record.EvalRecord` of this solve.
        gradient_source: ``g(x)`` from ``gradient_estimator`` (``None`` without one).

    Raises:
        ValueError: unknown ``hvp_method`` or ``nonfinite``.
    """

    def __init__(
        self,
        flat: FlatParams,
        closure: Callable[..., Any],
        *,
        hvp_method: HvpMethod = "autograd",
        uses_hessian: bool = False,
        gradient_estimator: Any = None,
        nonfinite: NonFinitePolicy = "inf",
        deadline: float | None = None,
        timeout: float | None = None,
        on_eval: Callable[[float], None] | None = None,
        on_evals: Callable[[np.ndarray], None] | None = None,
        start: np.ndarray | None = None,
        population: Any = None,
    ) -> None:
        self.record = EvalRecord(
            nonfinite=nonfinite,
            deadline=deadline,
            timeout=timeout,
            on_eval=on_eval,
            on_evals=on_evals,
            start=start,
        )
        self.flat = flat
        self.adapter = ClosureAdapter(closure)
        # populations: evaluated elsewhere (an executor), else by a BatchObjective closure, else row by row
        own = closure if isinstance(closure, BatchObjective) else None
        self.batch: Any = population if population is not None else own
        self._in_local = False
        self._silent = True  # until release(): kept graphs stay valid, cheap writes (see FlatParams.write)
        n = flat.n
        self._pool = [np.empty(n) for _ in range(_MEMO_SIZE + 2)]
        self._memo: list[Point] = []  # most recently used first
        self._diff_idx = [i for i, p in enumerate(flat.params) if p.requires_grad]
        self._diff_params = [flat.params[i] for i in self._diff_idx]
        self._choose_hvp(hvp_method, uses_hessian)
        self.gradient_source: Callable[..., np.ndarray] | None = None
        if gradient_estimator is not None:
            self.gradient_source = LatestGradients(gradient_estimator.make_scipy_jac(self))

    # ------------------------------------------------------------------ counters and best point
    @property
    def nfev(self) -> int:
        """Closure runs so far."""
        return self.record.nfev

    @property
    def ngev(self) -> int:
        """Gradients the solver asked for."""
        return self.record.ngev

    @property
    def nhev(self) -> int:
        """Hessian(-vector) products the solver asked for."""
        return self.record.nhev

    @property
    def n_nonfinite(self) -> int:
        """Non-finite losses seen."""
        return self.record.n_nonfinite

    @property
    def nonfinite(self) -> NonFinitePolicy:
        """The non-finite policy."""
        return self.record.nonfinite

    @property
    def best_x(self) -> np.ndarray | None:
        """The best finite point seen (``None`` before any finite loss)."""
        b: Point | None = self.record.best_x
        return None if b is None else b.x

    @property
    def best_f(self) -> float:
        """The loss at :attr:`best_x` (``inf`` before any finite loss)."""
        return self.record.best_f

    # ------------------------------------------------------------------ scipy-facing API
    def fun(self, x: np.ndarray, *args: Any) -> float:
        """Loss at ``x``, computing the gradient along (``fun`` then ``grad`` at one point run the closure once)."""
        return self._evaluate(x, True).f

    def global_fun(self, x: np.ndarray, *args: Any) -> float:
        """Loss at ``x``: value-only, except inside :meth:`local_search` with exact gradients (then as :meth:`fun`)."""
        return self._evaluate(x, self._in_local).f

    @contextlib.contextmanager
    def local_search(self, exact: bool = True) -> Iterator[None]:
        """A global solver's local search: :meth:`global_fun` computes gradients along while it runs (``exact``)."""
        before = self._in_local
        self._in_local = exact
        try:
            yield
        finally:
            self._in_local = before

    def grad(self, x: np.ndarray, *args: Any) -> np.ndarray:
        """Gradient at ``x`` as a new float64 vector."""
        self.record.ngev += 1
        return self._evaluate(x, True).g  # type: ignore[return-value]

    def fun_and_grad(self, x: np.ndarray, *args: Any) -> tuple[float, np.ndarray]:
        """``(loss, gradient)`` at ``x`` from one closure run."""
        self.record.ngev += 1
        e = self._evaluate(x, True)
        return e.f, e.g  # type: ignore[return-value]

    def fun_and_grad_if_any(self, x: np.ndarray) -> tuple[float, np.ndarray | None]:
        """``(loss, gradient)`` at ``x`` from one closure run with backward; ``None`` when the closure left no gradient.

        For solvers that can fall back to derivative-free work when the closure never calls
        ``backward`` (it is asked with ``backward=True`` once, and the answer is remembered).
        """
        e = self._evaluate(x, True, optional=True)
        if e.g is not None:
            self.record.ngev += 1
        return e.f, e.g

    def count_gradients(self, n: int) -> None:
        """Add ``n`` gradients a solver computed itself (finite differences, a user's ``jac``) to ``ngev``."""
        self.record.ngev += int(n)

    def counted(self, jac: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        """``jac`` with every call counted in ``ngev`` (a gradient estimator handed to a solver)."""
        record = self.record

        def counted_jac(x: np.ndarray, *args: Any) -> np.ndarray:
            record.ngev += 1
            return jac(x, *args)

        return counted_jac

    def value(self, x: np.ndarray, *args: Any) -> float:
        """Loss at ``x`` without any gradient (for derivative-free solvers)."""
        return self._evaluate(x, False).f

    def values(self, X: np.ndarray) -> np.ndarray:
        """Loss at each row of ``X`` (shape ``(pop, n)``), without gradients.

        One vectorized pass per chunk when the closure is a :class:`BatchObjective`, else
        one closure run per row. Counters, the best point and non-finite handling are the
        same as for single evaluations; the parameters are not modified by batched passes.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.flat.n:
            raise ValueError(f"X: expected shape (pop, {self.flat.n}), got {X.shape}")
        if self.batch is None:
            return np.array([self.value(x) for x in X])
        self.record.check_deadline()
        f = self.batch.evaluate(self.flat, X)
        old = self.record.best_x
        if self.record.add_many(f, lambda i: Point(self._copy_to_free(X[i]), float(f[i]), None, None)) >= 0:
            self._drop_graph_of(old)
        return f

    # ------------------------------------------------------------------ state
    def gradient_at(self, x: np.ndarray) -> np.ndarray | None:
        """The gradient already computed at ``x`` (last or best point), else ``None``."""
        e = self._find(np.asarray(x, dtype=np.float64).reshape(-1))
        return None if e is None else e.g

    def value_at(self, x: np.ndarray) -> float | None:
        """The loss already computed at ``x`` (last or best point), else ``None``."""
        e = self._find(np.asarray(x, dtype=np.float64).reshape(-1))
        return None if e is None else e.f

    def check_deadline(self) -> None:
        """Raise :class:`StopSolve` once the timeout has passed."""
        self.record.check_deadline()

    def release(self) -> None:
        """Drop the kept autograd graphs (frees memory after a solve); writes bump versions again."""
        for e in [*self._memo, self.record.best_x]:
            if e is not None:
                e.graph = None
        self._silent = False

    # ------------------------------------------------------------------ internals
    def _find(self, x: np.ndarray) -> Point | None:
        first = x.item(0)  # cheap rejection before the full comparison
        memo = self._memo
        for i, e in enumerate(memo):
            if first == e.first and np.array_equal(x, e.x):
                if i:
                    memo.insert(0, memo.pop(i))  # least recently used goes first
                return e
        b: Point | None = self.record.state["best_x"]
        if b is not None and first == b.first and np.array_equal(x, b.x):
            return b
        return None

    def _evaluate(self, x: Any, need_grad: bool, graph: bool = False, optional: bool = False) -> Point:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            x = x.reshape(-1)
        graph = graph or (need_grad and self.graph_grads)
        e = self._find(x)
        if (
            e is not None
            and (not need_grad or e.g is not None or (optional and e.gradless))
            and (not graph or e.graph is not None)
        ):
            return e
        record = self.record
        record.check_deadline()
        buf = self._free_buffer()
        self.flat.write_keeping(x, buf, silent=self._silent)
        gr = None
        gradless = False
        g: np.ndarray | None
        if graph:
            f, g, gr = self._run_graph()
        elif need_grad:
            f = self.adapter.value_and_backward()
            g = self._collect_grad(required=not optional)
            gradless = g is None
        else:
            f = self.adapter.value()
            g = None
        e = Point(buf, f, g, gr)
        e.gradless = gradless
        e.version = self.flat.version
        old = record.state["best_x"]
        seen, better = record.add(buf, f, keep=e)
        if not math.isfinite(f):
            e.f, e.g = seen, record.treat_gradient(g)
        elif better:
            self._drop_graph_of(old)
        self._remember(e)
        return e

    def _remember(self, e: Point) -> None:
        self._memo.insert(0, e)
        if len(self._memo) > _MEMO_SIZE:
            old = self._memo.pop()
            if old is not self.record.state["best_x"]:
                old.graph = None  # graphs are kept for memoized points and the best one only

    def _drop_graph_of(self, old: Point | None) -> None:
        """``old`` was the best point and no longer is: drop its graph unless the memo still holds it."""
        if old is not None and not any(old is m for m in self._memo):
            old.graph = None

    def _free_buffer(self) -> np.ndarray:
        """A pooled buffer no remembered point uses."""
        memo = self._memo  # at most _MEMO_SIZE == 2 entries
        m0 = memo[0].x if memo else None
        m1 = memo[1].x if len(memo) > 1 else None
        best = self.record.state["best_x"]
        bx = None if best is None else best.x
        for b in self._pool:
            if b is not m0 and b is not m1 and b is not bx:
                return b
        raise AssertionError("unreachable: the pool has two more buffers than the memo")

    def _copy_to_free(self, x: np.ndarray) -> np.ndarray:
        b = self._free_buffer()
        np.copyto(b, x)
        return b

    def _collect_grad(self, required: bool = True) -> np.ndarray | None:
        # gradients still referenced by remembered points must never be written to again
        memo, b = self._memo, self.record.state["best_x"]
        held = [e.g for e in memo] + ([] if b is None else [b.g])
        g = self.flat.take_grad(held)
        if g is not None:
            return g
        if self._diff_params and not required:
            return None
        if self._diff_params:
            raise MissingGradientError(
                "the closure returned a loss but no parameter has a .grad: a gradient-based method "
                "needs the closure to call loss.backward() (or to accept `backward` and call it "
                "when backward=True); for derivative-free methods pass jac=False"
            )
        return np.zeros(self.flat.n)


_MEMO_SIZE = 2  # points remembered besides the best one (a trust-region iterate and its trial)
