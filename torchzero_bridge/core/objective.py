"""Objective: a user's closure seen by a solver as ``fun``/``grad``/``hessp``/``hess`` on float64 vectors.

Every evaluation is memoized on a copy of ``x``: asking for the value and then the gradient
at the same point runs the closure once. Counters mean what scipy's mean: ``nfev`` counts
closure runs, ``ngev`` the gradients a solver asked for (each call of :meth:`grad` or
:meth:`fun_and_grad`, as scipy counts ``njev``; finite-difference Hessian products count the
gradients they take at their probes), ``nhev`` the Hessian(-vector) products. A gradient
computed along with a value that no solver asked for is not counted. The best finite point
seen is kept so an interrupted solve can restore it.

:meth:`Objective.fun` computes the gradient along with the value only while a gradient
solver runs (:meth:`Objective.expect_gradients`); global solvers switch this on for their
local searches only, so value-only evaluations (annealing visits, sampling points,
population members) run no backward pass.

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

import math
import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from torchzero_bridge.core.batch import BatchObjective
from torchzero_bridge.core.closure import ClosureAdapter
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.hessian import HessianProducts
from torchzero_bridge.core.point import Point
from torchzero_bridge.errors import MissingGradientError, NonFiniteLossWarning

__all__ = ["HVP_METHODS", "NONFINITE_POLICIES", "Objective", "StopSolve"]

HVP_METHODS = ("autograd", "forward", "central")
NONFINITE_POLICIES = ("inf", "raise", "pass")

HvpMethod = Literal["autograd", "forward", "central"]
NonFinitePolicy = Literal["inf", "raise", "pass"]


class StopSolve(Exception):
    """Raised inside a solve to end it cleanly (timeout, a callback asking to stop).

    Args:
        reason: the message put into ``result.message``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Objective(HessianProducts):
    """Memoized, counted view of a closure for solvers working on float64 vectors.

    Args:
        flat: the parameter layout.
        closure: the user's closure (plain, ``backward``-aware, or gngdb-style object).
        hvp_method: how Hessian-vector products are formed (see module docstring).
        uses_hessian: the solver will ask for ``hessp``/``hess``; with
            ``hvp_method="autograd"`` every gradient evaluation then keeps its graph so
            products at that point need no second closure run.
        nonfinite: what the solver sees when the loss is NaN or infinite: ``"inf"``
            (default) reports ``+inf`` so line searches back off, ``"raise"`` raises
            ``FloatingPointError``, ``"pass"`` hands the value through unchanged.
        deadline: ``time.perf_counter()`` value after which evaluations raise
            :class:`StopSolve`.
        on_eval: called with each new loss value (progress bars, logging).
        on_evals: called once with all the losses of a batched evaluation (:meth:`values`)
            when they are all finite, instead of ``on_eval`` once per row.
        population: what evaluates populations for :meth:`values` instead of the closure
            (an object with ``evaluate(flat, X)``, e.g. a ``RemoteEvaluator`` on an executor).

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
        nonfinite: NonFinitePolicy = "inf",
        deadline: float | None = None,
        timeout: float | None = None,
        on_eval: Callable[[float], None] | None = None,
        on_evals: Callable[[np.ndarray], None] | None = None,
        population: Any = None,
    ) -> None:
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"hvp_method: expected one of {HVP_METHODS}, got {hvp_method!r}")
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite: expected one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        self.flat = flat
        self.adapter = ClosureAdapter(closure)
        # populations: evaluated elsewhere (an executor), else by a BatchObjective closure, else row by row
        own = closure if isinstance(closure, BatchObjective) else None
        self.batch: Any = population if population is not None else own
        if hvp_method == "autograd" and uses_hessian and not self.adapter.has_graph:
            warnings.warn(
                "exact Hessian-vector products need a closure that accepts `backward` "
                "(def closure(backward=True)) or a closure object with .model and .loss(model); "
                "this closure has neither, so hvp_method='central' finite differences are used",
                stacklevel=3,
            )
            hvp_method = "central"
        self.hvp_method: HvpMethod = hvp_method
        self.graph_grads = uses_hessian and hvp_method == "autograd" and not self.adapter.is_object
        self._want_grad = uses_hessian
        flat.silent = True  # until release(): kept graphs stay valid, cheap writes (see FlatParams.write)
        self.nonfinite = nonfinite
        self.deadline = deadline
        self.timeout = timeout
        self.on_eval = on_eval
        self.on_evals = on_evals

        self.nfev = 0
        self.ngev = 0
        self.nhev = 0
        self.n_nonfinite = 0

        n = flat.n
        self._pool = [np.empty(n) for _ in range(_MEMO_SIZE + 2)]
        self._memo: list[Point] = []  # most recently used first
        self._best: Point | None = None
        self._diff_idx = [i for i, p in enumerate(flat.params) if p.requires_grad]
        self._diff_params = [flat.params[i] for i in self._diff_idx]

    # ------------------------------------------------------------------ best point
    @property
    def best_x(self) -> np.ndarray | None:
        """The best finite point seen (``None`` before any finite loss)."""
        return None if self._best is None else self._best.x

    @property
    def best_f(self) -> float:
        """The loss at :attr:`best_x` (``inf`` before any finite loss)."""
        return math.inf if self._best is None else self._best.f

    @property
    def best_g(self) -> np.ndarray | None:
        """The gradient at :attr:`best_x`, when one was computed there."""
        return None if self._best is None else self._best.g

    # ------------------------------------------------------------------ scipy-facing API
    def fun(self, x: np.ndarray, *args: Any) -> float:
        """Loss at ``x`` (computes the gradient too while a gradient solver runs, see :meth:`expect_gradients`)."""
        return self._evaluate(x, self._want_grad).f

    def grad(self, x: np.ndarray, *args: Any) -> np.ndarray:
        """Gradient at ``x`` as a new float64 vector."""
        self.ngev += 1
        return self._evaluate(x, True).g  # type: ignore[return-value]

    def fun_and_grad(self, x: np.ndarray, *args: Any) -> tuple[float, np.ndarray]:
        """``(loss, gradient)`` at ``x`` from one closure run."""
        self.ngev += 1
        e = self._evaluate(x, True)
        return e.f, e.g  # type: ignore[return-value]

    def fun_and_grad_if_any(self, x: np.ndarray) -> tuple[float, np.ndarray | None]:
        """``(loss, gradient)`` at ``x`` from one closure run with backward; ``None`` when the closure left no gradient.

        For solvers that can fall back to derivative-free work when the closure never calls
        ``backward`` (it is asked with ``backward=True`` once, and the answer is remembered).
        """
        e = self._evaluate(x, True, optional=True)
        if e.g is not None:
            self.ngev += 1
        return e.f, e.g

    def count_gradients(self, n: int) -> None:
        """Add ``n`` gradients a solver computed itself (finite differences, a user's ``jac``) to ``ngev``."""
        self.ngev += int(n)

    def counted(self, jac: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        """``jac`` with every call counted in ``ngev`` (a gradient estimator handed to a solver)."""

        def counted_jac(x: np.ndarray, *args: Any) -> np.ndarray:
            self.ngev += 1
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
        self.check_deadline()
        f = self.batch.evaluate(self.flat, X)
        self.nfev += len(f)
        if len(f) and (self.on_eval is None or self.on_evals is not None) and bool(np.isfinite(f).all()):
            # all finite: the row loop below would end at the first smallest row, if it beats the best
            i = int(np.argmin(f))
            if f[i] < self.best_f:
                self._set_best(Point(self._copy_to_free(X[i]), float(f[i]), None, None))
            if self.on_evals is not None:
                self.on_evals(f)
            return f
        for i in range(len(f)):
            fi = float(f[i])
            if not math.isfinite(fi):
                f[i], _ = self._nonfinite(fi, None, X[i])
            elif fi < self.best_f:
                self._set_best(Point(self._copy_to_free(X[i]), fi, None, None))
            if self.on_eval is not None:
                self.on_eval(float(f[i]))
        return f

    _want_grad = False

    gradient_source: Callable[[np.ndarray], np.ndarray] | None = None
    """Optional ``g(x)`` used instead of autograd by the finite-difference Hessian-vector
    products (``hvp_method`` ``"forward"``/``"central"``); it should evaluate through
    :meth:`value` so its closure runs are counted."""

    def expect_gradients(self, flag: bool = True) -> None:
        """Make :meth:`fun` compute the gradient along with the value (gradient solvers), or stop it."""
        self._want_grad = flag

    @property
    def expects_gradients(self) -> bool:
        """Whether :meth:`fun` computes the gradient along with the value."""
        return self._want_grad

    # ------------------------------------------------------------------ state
    @property
    def last_x(self) -> np.ndarray | None:
        """The most recently evaluated point (read-only view)."""
        return self._memo[0].x if self._memo else None

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
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise StopSolve(f"timeout: stopped after {self.timeout} s")

    def release(self) -> None:
        """Drop the kept autograd graphs (frees memory after a solve); writes bump versions again."""
        for e in [*self._memo, self._best]:
            if e is not None:
                e.graph = None
        self.flat.silent = False

    # ------------------------------------------------------------------ internals
    def _find(self, x: np.ndarray) -> Point | None:
        first = x.item(0)  # cheap rejection before the full comparison
        memo = self._memo
        for i, e in enumerate(memo):
            if first == e.first and np.array_equal(x, e.x):
                if i:
                    memo.insert(0, memo.pop(i))  # least recently used goes first
                return e
        b = self._best
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
        self.check_deadline()
        buf = self._free_buffer()
        self.flat.write_keeping(x, buf)
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
        self.nfev += 1
        e = Point(buf, f, g, gr)
        e.gradless = gradless
        e.version = self.flat.version
        if not math.isfinite(f):
            e.f, e.g = self._nonfinite(f, g, buf)
        elif f < self.best_f:
            self._set_best(e)
        self._remember(e)
        if self.on_eval is not None:
            self.on_eval(e.f)
        return e

    def _remember(self, e: Point) -> None:
        self._memo.insert(0, e)
        if len(self._memo) > _MEMO_SIZE:
            old = self._memo.pop()
            if old is not self._best:
                old.graph = None  # graphs are kept for memoized points and the best one only

    def _set_best(self, e: Point) -> None:
        old = self._best
        if old is not None and not any(old is m for m in self._memo):
            old.graph = None
        self._best = e

    def _free_buffer(self) -> np.ndarray:
        """A pooled buffer no remembered point uses."""
        memo = self._memo  # at most _MEMO_SIZE == 2 entries
        m0 = memo[0].x if memo else None
        m1 = memo[1].x if len(memo) > 1 else None
        bx = None if self._best is None else self._best.x
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
        memo, b = self._memo, self._best
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

    def _nonfinite(self, f: float, g: np.ndarray | None, x: np.ndarray) -> tuple[float, np.ndarray | None]:
        self.n_nonfinite += 1
        if self.n_nonfinite == 1:
            warnings.warn(
                f"the closure returned a non-finite loss ({f}); such points are never kept as the "
                f"answer (nonfinite={self.nonfinite!r})",
                NonFiniteLossWarning,
                stacklevel=4,
            )
        if self.nonfinite == "raise":
            raise FloatingPointError(f"the closure returned a non-finite loss ({f})")
        if self.nonfinite == "inf":
            return math.inf, (None if g is None else np.zeros_like(g))
        return f, g


_MEMO_SIZE = 2  # points remembered besides the best one (a trust-region iterate and its trial)
