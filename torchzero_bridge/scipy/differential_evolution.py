"""DifferentialEvolutionWrapper: ``scipy.optimize.differential_evolution`` as a torch optimizer.

Drop-in for gngdb's ``DifferentialEvolutionWrapper(params, de_kwargs)``; the options may also
be given as keywords. Integer and boolean tensors are optimized as integers (scipy's
``integrality``); the closure sees integral values in the tensor's own dtype.

Passing a :class:`~torchzero_bridge.BatchObjective` to ``step`` evaluates each generation's
whole population in one vectorized pass. The population goes to the objective through
scipy's map-like ``workers`` hook with ``updating="deferred"``, so the run, ``nfev`` (points
evaluated) and ``maxfun`` are exactly those of serial ``updating="deferred"`` evolution.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> w = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    >>> opt = tzb.DifferentialEvolutionWrapper([{"params": [w], "bounds": (-3.0, 3.0)}], {"rng": 0})
    >>> def closure(backward=True):
    ...     opt.zero_grad()
    ...     loss = ((w - 1.0) ** 2).sum()
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> loss = opt.step(closure)
    >>> [round(v, 6) for v in w.tolist()]
    [1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from scipy.optimize import Bounds, OptimizeResult, differential_evolution, minimize

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.base import SolveContext, UserCallback
from torchzero_bridge.core.objective import NonFinitePolicy, Objective
from torchzero_bridge.core.remote import check_executor
from torchzero_bridge.core.threads import ThreadsSpec
from torchzero_bridge.errors import BridgeWarning, IgnoredOptionWarning, MissingGradientError
from torchzero_bridge.scipy._callables import minimize_callables
from torchzero_bridge.scipy._global import GlobalWrapper, require_bounds
from torchzero_bridge.scipy.methods import method_info

__all__ = ["DifferentialEvolutionWrapper"]


class DifferentialEvolutionWrapper(GlobalWrapper):
    """``scipy.optimize.differential_evolution`` as a ``torch.optim.Optimizer``.

    One ``step`` is one whole run. The starting parameters become the first member of the
    initial population (scipy's ``x0``; clipped into the bounds with a warning if outside).
    The parameters end at the best point evaluated.

    Args:
        params: tensors or param-group dicts. Every entry needs finite bounds: a group's
            ``bounds=(lo, hi)`` (scalars or tensors shaped like its parameters) or flat
            scipy-style ``bounds`` in ``de_kwargs``. Boolean tensors default to ``[0, 1]``.
        de_kwargs: gngdb-style dict of ``differential_evolution`` arguments (``bounds``,
            ``strategy``, ``maxiter``, ``popsize``, ``tol``, ``mutation``, ``recombination``,
            ``rng``/``seed``, ``polish``, ``init``, ``atol``, ``updating``, ``workers``,
            ``constraints``, ``integrality``, ``vectorized``, ``x0``, ``callback``...). An
            explicit ``x0`` (a flat vector, or ``None`` for no start point) replaces the
            parameters' values as the start.
        jac: gradients for the final polish with L-BFGS-B: ``True`` exact (autograd),
            ``False`` scipy's finite differences (as scipy itself does), ``"auto"`` (default)
            exact when the closure accepts ``backward``, is a closure object or a
            ``BatchObjective``, else finite differences. When the polish is to use exact
            gradients, the first evaluation runs the closure with ``backward=True`` (the only
            backward pass of the search) to check that it gives a gradient: if it leaves none
            (a value-only closure), ``"auto"`` polishes with finite differences and warns
            (``BridgeWarning``), and ``True`` raises ``MissingGradientError`` at once.
        warm_start: a later ``step`` continues from the previous step's final population
            (scipy's ``init``) instead of a fresh one; the population is kept in ``state_dict``.
        callback: called once per generation with scipy's intermediate ``OptimizeResult``
            (``x``, ``fun``, ``population``, ``convergence``...); returning ``True`` stops.
        timeout: seconds before the run stops cleanly.
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while scipy runs.
        nonfinite: how NaN/inf losses are reported to scipy.
        executor: a ``concurrent.futures.Executor`` or a ``dask.distributed.Client``: each
            generation is split into chunks evaluated on its workers (``updating="deferred"``,
            as with a ``BatchObjective``). The closure or ``BatchObjective`` is sent once per
            step; a closure must be picklable and reach the model through what it captures.
            Not combinable with ``workers`` or ``vectorized=False``.
        **keywords: any ``differential_evolution`` argument, as in ``de_kwargs``.

    Raises:
        ValueError: missing or infinite bounds (naming the tensor), ``lo > hi``, bounds of
            the wrong shape, an option given twice, ``executor`` with ``workers``; at ``step``,
            ``vectorized=True`` with a closure that cannot evaluate a population.
        TypeError: unknown option names; an ``executor`` of another kind; at ``step``, a
            closure an executor cannot ship.

    An error raised by the closure during the search propagates with its own type (scipy
    would turn a ``TypeError``/``ValueError``, such as ``ClosureError``, into its own
    ``RuntimeError`` about map-like callables).

    ``rng``/``seed`` are used the way scipy uses them (``rng`` via ``numpy.random.default_rng``,
    an int ``seed`` as a legacy ``RandomState``); the generator lives across steps, so a
    second ``step`` continues its stream and ``state_dict`` resumes it exactly.
    """

    solver = staticmethod(differential_evolution)
    options_name = "de_kwargs"
    allow_integer: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        de_kwargs: Mapping[str, Any] | None = None,
        *,
        jac: bool | Literal["auto"] = "auto",
        warm_start: bool = False,
        callback: UserCallback | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
        executor: Any = None,
        **keywords: Any,
    ) -> None:
        self.executor = check_executor(executor, "DifferentialEvolutionWrapper")
        if not (jac is True or jac is False or jac == "auto"):
            raise ValueError(f"jac: expected True, False or 'auto', got {jac!r}")
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start: expected True or False, got {warm_start!r}")
        self.jac = jac
        self.warm_start = warm_start
        self.population: np.ndarray | None = None
        super().__init__(
            params,
            None,
            de_kwargs,
            keywords,
            callback=callback,
            timeout=timeout,
            progress=progress,
            threads=threads,
            nonfinite=nonfinite,
        )
        kw = self.solver_kwargs
        polish = kw.get("polish", True)
        if jac != "auto" and (polish is False or callable(polish)):
            what = "polish=False" if polish is False else "a custom polish function"
            warn_user(f"jac={jac!r} only affects the built-in polish; with {what} it is ignored", IgnoredOptionWarning)
        vec = kw.get("vectorized")
        if vec is not None and not isinstance(vec, bool):
            raise TypeError(f"vectorized: expected True, False or None, got {vec!r}")
        if executor is not None and (kw.get("workers", 1) != 1 or vec is False):
            what = "workers" if kw.get("workers", 1) != 1 else "vectorized=False"
            raise ValueError(f"executor evaluates each generation on its workers; {what} cannot be given with it")
        if vec is True and kw.get("updating") == "immediate":
            warn_user(
                "batched evaluation (vectorized=True) evaluates a whole generation at once, so "
                "updating='immediate' is ignored (updating='deferred' is used)",
                IgnoredOptionWarning,
            )

    # ------------------------------------------------------------------ hooks
    def _check_bounds(self) -> None:
        require_bounds(self.flat_params(), self.flat_bounds, type(self).__name__, bool_default=True)

    def _bridge_state(self) -> dict[str, Any]:
        state = super()._bridge_state()
        state["warm_start"] = self.warm_start
        state["population"] = None if self.population is None else self.population.copy()
        return state

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        super()._load_bridge_state(state)
        self.warm_start = state.get("warm_start", self.warm_start)
        pop = state.get("population")
        self.population = None if pop is None else np.array(pop, dtype=np.float64)

    # ------------------------------------------------------------------ solve
    def _run(self, ctx: SolveContext, kwargs: dict[str, Any]) -> OptimizeResult:
        flat, obj = ctx.flat, ctx.objective
        lo, hi = require_bounds(flat, self.flat_bounds, type(self).__name__, bool_default=True)
        if "x0" not in kwargs:
            kwargs["x0"] = flat.layout.clip_start(ctx.x0, lo, hi)
        if flat.has_integers:
            mask = flat.integer_mask.copy()
            if kwargs.get("integrality") is not None:
                mask |= np.broadcast_to(np.asarray(kwargs["integrality"], dtype=bool), mask.shape)
            kwargs["integrality"] = mask
        exact = self.jac is True or (self.jac == "auto" and obj.adapter.has_graph)
        func = _Evaluations(obj, probe=kwargs.get("polish", True) is True and exact and obj.batch is None)
        func.strict = self.jac is True
        self._set_evaluation(ctx, kwargs, func)
        if kwargs.get("polish", True) is True:
            kwargs["polish"] = _polisher(ctx, func)
        if self.warm_start and self.population is not None:
            if self.population.shape[1] != flat.n:
                raise ValueError(
                    f"warm_start: the saved population has {self.population.shape[1]} columns but the "
                    f"parameters have {flat.n} entries"
                )
            kwargs["init"] = self.population
        if self._wants_callback():
            kwargs["callback"] = ctx.callback
        error: BaseException | None = None
        try:
            result = differential_evolution(func, Bounds(lo, hi), **kwargs)
        except _ClosureFailed as failed:
            error = failed.error
        if error is not None:
            raise error  # outside the except block: the user's error, not chained to the carrier
        if self.warm_start and "population" in result:
            self.population = np.array(result.population, dtype=np.float64)
        return result

    def _set_evaluation(self, ctx: SolveContext, kwargs: dict[str, Any], evaluations: _Evaluations) -> None:
        """Batched population evaluation through scipy's map-like hook, or scipy's own workers."""
        obj = ctx.objective
        vec = kwargs.pop("vectorized", None)
        if vec is True and obj.batch is None:  # an executor's evaluator counts as a batch
            raise ValueError(
                "vectorized=True needs a closure that evaluates a whole population: pass a "
                "tzb.BatchObjective(model, loss_fn, *inputs) to step(); this closure "
                f"({type(obj.adapter.closure).__name__}) evaluates one point per call"
            )
        workers = kwargs.get("workers", 1)
        if obj.batch is not None and vec is not False:
            if workers != 1:
                warn_user(
                    "workers overrides batched population evaluation (as in scipy); the closure "
                    "is evaluated one point per call through workers",
                    IgnoredOptionWarning,
                )
            else:
                if kwargs.get("updating") == "immediate" and vec is None:
                    warn_user(
                        "batched evaluation evaluates a whole generation at once, so "
                        "updating='immediate' is ignored (updating='deferred' is used)",
                        IgnoredOptionWarning,
                    )
                kwargs["updating"] = "deferred"
                kwargs["workers"] = _population_map(evaluations.values)
                return
        if workers != 1 and "updating" not in kwargs:
            kwargs["updating"] = "deferred"  # what scipy switches to with workers, minus its warning


class _ClosureFailed(Exception):
    """Carries an error raised by the closure past scipy, which rewraps ``TypeError``/``ValueError``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Evaluations:
    """DE's objective: value-only evaluations; with ``probe``, the first one also checks for a gradient.

    Args:
        objective: the memoized objective.
        probe: run the first evaluation with ``backward=True`` to learn whether the closure
            gives gradients (the polish uses them when it does).

    Attributes:
        exact: the polish may use exact gradients.
        strict: a missing gradient raises ``MissingGradientError`` instead of a warning.
    """

    def __init__(self, objective: Objective, probe: bool) -> None:
        self.objective = objective
        self.probe = probe
        self.exact = probe
        self.strict = False

    def __call__(self, x: np.ndarray, *args: Any) -> float:
        try:
            if self.probe:
                return self._first(x)
            return self.objective.value(x)
        except (TypeError, ValueError) as error:
            raise _ClosureFailed(error) from None

    def values(self, X: np.ndarray) -> np.ndarray:
        """Batched evaluation of the rows of ``X`` (see :meth:`Objective.values`)."""
        try:
            return self.objective.values(X)
        except (TypeError, ValueError) as error:
            raise _ClosureFailed(error) from None

    def _first(self, x: np.ndarray) -> float:
        self.probe = False
        f, g = self.objective.fun_and_grad_if_any(x)
        if g is None:
            self.exact = False
            message = (
                "the closure ran with backward=True but left no gradient (.grad is None), so the "
                "final polish cannot use exact gradients"
            )
            if self.strict:
                raise MissingGradientError(f"{message}; pass jac=False (finite differences) or call backward()")
            warn_user(f"{message}; it uses finite differences instead (pass jac=False to silence this)", BridgeWarning)
        return f


def _population_map(values: Callable[[np.ndarray], np.ndarray]) -> Callable[[Any, Any], np.ndarray]:
    """A map-like ``workers`` callable that evaluates all rows in one batched call."""

    def evaluate_population(func: Any, population: Any) -> np.ndarray:
        return values(np.asarray(population, dtype=np.float64))

    return evaluate_population


def _polisher(ctx: SolveContext, evaluations: _Evaluations) -> Callable[..., OptimizeResult]:
    """scipy's default polish (L-BFGS-B, or trust-constr with constraints) on the memoized objective."""

    def polish(func: Any, x0: np.ndarray, bounds: Any = None, constraints: Any = ()) -> OptimizeResult:
        has_constraints = bool(constraints) if isinstance(constraints, (list, tuple)) else constraints is not None
        method = "trust-constr" if has_constraints else "L-BFGS-B"
        exact = evaluations.exact
        fun, kw = minimize_callables(
            {"method": method, "jac": True if exact else None}, method_info(method), ctx.objective, ctx.flat
        )
        kw.pop("hess", None)  # scipy's polish uses a quasi-Newton Hessian
        kw.pop("hessp", None)
        result = minimize(fun, x0, method=method, bounds=bounds, constraints=constraints, **kw)
        if not exact:
            ctx.objective.count_gradients(int(result.get("njev", 0)))  # scipy's finite differences
        return result

    return polish
