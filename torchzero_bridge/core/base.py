"""BridgeOptimizer: the ``torch.optim.Optimizer`` side of every external-solver wrapper.

It owns the ``step(closure)`` lifecycle shared by all wrappers:

1. read the parameters into a flat float64 vector (:class:`FlatParams`);
2. wrap the closure in a memoized, counted :class:`Objective`;
3. run the solver (the subclass's :meth:`BridgeOptimizer._solve`) with BLAS threads limited;
4. write the answer back in place (``p.grad`` matching it, or ``None``) and return the loss there.

On an error or interrupt the parameters go to the best finite point seen (or the start) and it
propagates; a timeout or a callback returning ``True`` ends the run cleanly.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> w = torch.tensor([3.0, -2.0], requires_grad=True)
    >>> opt = tzb.MinimizeWrapper([w], method="BFGS")
    >>> def closure(backward=True):
    ...     opt.zero_grad()
    ...     loss = ((w - 1.0) ** 2).sum()
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> loss = opt.step(closure)
    >>> round(float(loss), 8), opt.result.success
    (0.0, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import OptimizeResult

from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.frozen import SkipsFrozen
from torchzero_bridge.core.objective import NonFinitePolicy, Objective, StopSolve
from torchzero_bridge.core.param_checks import GroupOptionsChecked
from torchzero_bridge.core.progress import Progress
from torchzero_bridge.core.start import note
from torchzero_bridge.core.state import StatefulOptimizer, from_plain, to_plain
from torchzero_bridge.core.threads import ThreadsSpec, check_threads, limit_threads

__all__ = ["BridgeOptimizer", "SolveContext", "materialize_params"]

UserCallback = Callable[[OptimizeResult], Any]


@dataclass
class SolveContext:
    """Everything a wrapper's ``_solve`` needs for one ``step``.

    Attributes:
        flat: the parameter layout.
        objective: the memoized objective built from the closure.
        x0: the starting point (a copy of the parameters at ``step`` entry).
        user_callback: the user's callback, or ``None``.
    """

    flat: FlatParams
    objective: Objective
    x0: np.ndarray
    user_callback: UserCallback | None = None

    def callback(self, intermediate_result: OptimizeResult) -> None:
        """scipy-style callback: forwards to the user's and stops on request or timeout.

        The argument name ``intermediate_result`` makes scipy pass an ``OptimizeResult``.
        """
        self.check_deadline()
        if self.user_callback is not None and self.user_callback(intermediate_result) is True:
            raise StopSolve("stopped by callback")

    def check_deadline(self) -> None:
        """Raise :class:`StopSolve` once the timeout has passed (the objective keeps the clock)."""
        self.objective.check_deadline()


class BridgeOptimizer(StatefulOptimizer, SkipsFrozen, GroupOptionsChecked):
    """Base class of every wrapper around an external solver.

    Args:
        params: tensors or param-group dicts. Each group may carry ``bounds=(lo, hi)``.
        defaults: per-group defaults (``bounds`` is always added).
        callback: called after each solver iteration with an ``OptimizeResult`` holding at
            least ``x`` and ``fun``; returning ``True`` stops the run cleanly.
        timeout: seconds; the run stops cleanly after this long (``result.success=False``).
        progress: show a tqdm bar with evaluations and the best loss.
        threads: thread limit while the solver runs (see :func:`limit_threads`).
        nonfinite: policy for NaN/inf losses (``"inf"``, ``"raise"``, ``"pass"``).

    Attributes:
        result: the last ``step``'s ``scipy.optimize.OptimizeResult`` (also as ``res``).

    Solvers that answer with the best point seen (global scipy solvers, nevergrad, optuna)
    also never end a step worse than it started: the start point competes (its loss is known
    from the previous step, or from the solver's own evaluation of it, or it is evaluated once
    after the run; ``result.start_fun`` holds it, ``result.start_evaluated`` says whether that
    extra closure run happened, and ``result.nfev`` does not count it), and the parameters end at
    the best point of the optimizer's whole life, which is kept in ``state_dict``. Only a strict
    improvement replaces the solver's answer, so ties keep it. A start outside the bounds does
    not compete. The record assumes the closure is the same function at every step.
    """

    allow_integer: ClassVar[bool] = False
    """Whether the solver optimizes integer and boolean tensors."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any] | None = None,
        *,
        callback: UserCallback | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
    ) -> None:
        param_list = materialize_params(params)
        FlatParams(param_list, allow_integer=self.allow_integer)  # validates with messages naming tensors
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable, got {type(callback).__name__}")
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ValueError(f"timeout: expected a positive number of seconds or None, got {timeout!r}")
        if not isinstance(progress, bool):
            raise TypeError(f"progress: expected True or False, got {progress!r}")
        if nonfinite not in ("inf", "raise", "pass"):
            raise ValueError(f"nonfinite: expected one of ('inf', 'raise', 'pass'), got {nonfinite!r}")
        check_threads(threads)
        super().__init__(param_list, {"bounds": None, **(defaults or {})})
        self.callback = callback
        self.timeout = timeout
        self.progress = progress
        self.threads = threads
        self.nonfinite: NonFinitePolicy = nonfinite
        self.result: OptimizeResult | None = None
        self._best_x: np.ndarray | None = None  # best point over all steps (whole-run solvers)
        self._best_f = math.inf

    # ------------------------------------------------------------------ public
    @property
    def res(self) -> OptimizeResult | None:
        """Alias of :attr:`result` (the name gngdb's pytorch-minimize uses)."""
        return self.result

    def flat_params(self) -> FlatParams:
        """The host vector of the current parameter groups (cached; rebuilt when tensors or group options change)."""
        return FlatParams.cached(self, self.param_groups, allow_integer=self.allow_integer)

    def step(self, closure: Callable[..., Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """Run the whole solve from the current parameters.

        Args:
            closure: re-evaluates the model and returns the loss (see the closure convention
                in the README).

        Returns:
            The loss at the answer, as a 0-dim float64 tensor.

        Raises:
            TypeError: no closure.
        """
        if closure is None:
            raise TypeError(
                f"{type(self).__name__}.step() needs a closure that re-evaluates the model and returns the loss"
            )
        flat = self.flat_params()
        x0 = flat.read()
        deadline = None if self.timeout is None else time.perf_counter() + self.timeout
        bar = Progress(self.progress, desc=type(self).__name__)
        best_of_run = self._answer_is_best()
        objective = Objective(
            flat,
            closure,
            deadline=deadline,
            timeout=self.timeout,
            on_eval=bar.update,
            on_evals=bar.update_many,
            nonfinite=self.nonfinite,
            start=x0 if best_of_run else None,
            population=self._population(closure, flat),
            **self._objective_options(),
        )
        ctx = SolveContext(flat, objective, x0, self.callback)
        try:  # the answer's write is inside too: an interrupt never leaves a trial point
            try:
                with limit_threads(self.threads):
                    result = self._solve(ctx)
                    if best_of_run:
                        result["start_fun"], result["start_evaluated"] = self._start_loss(ctx)
            except StopSolve as stop:
                result = self._best_result(ctx, stop.reason)
            self.result = result
            loss = self._write_answer(ctx, result)
        except BaseException as exc:
            self.result = self._best_result(ctx, f"interrupted by {type(exc).__name__}: {exc}")
            self._write_answer(ctx, self.result)
            raise
        finally:
            bar.close()
        return torch.tensor(loss, dtype=torch.float64)

    def _extra_state(self) -> dict[str, Any]:
        """:meth:`_bridge_state` as plain values (numpy arrays as tensors).

        Objects that cannot be saved as plain data (callables, scipy's ``LbfgsInvHessProduct``
        in ``result.hess_inv``...) are left out; loading keeps the ones this optimizer was
        constructed with.
        """
        return to_plain(self._bridge_state(), drop_objects=True, where="state")

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._load_bridge_state(from_plain(state))

    # ------------------------------------------------------------------ for subclasses
    def _solve(self, ctx: SolveContext) -> OptimizeResult:
        """Run the solver; return its ``OptimizeResult`` (``x``, ``fun``, ``success``...)."""
        raise NotImplementedError

    def _population(self, closure: Callable[..., Any], flat: FlatParams) -> Any:
        """Where populations are evaluated: a :class:`RemoteEvaluator` when the wrapper has an executor."""
        executor = getattr(self, "executor", None)
        if executor is None:
            return None
        from torchzero_bridge.core.remote import RemoteEvaluator

        return RemoteEvaluator(executor, closure, flat)

    def _objective_options(self) -> dict[str, Any]:
        """Keyword arguments for the :class:`Objective` (``hvp_method``, ``uses_hessian``)."""
        return {}

    def _answer_is_best(self) -> bool:
        """Population/sampling methods answer with the best point seen, not ``result.x``."""
        return False

    def _bridge_state(self) -> dict[str, Any]:
        """What a later ``step`` needs beyond torch's param groups (numpy arrays are fine here)."""
        state: dict[str, Any] = {"result": None if self.result is None else dict(self.result)}
        if self._best_x is not None:
            state["best"] = {"x": self._best_x.copy(), "f": self._best_f}
        return state

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_bridge_state` (tensors arrive as numpy arrays)."""
        res = state.get("result")
        self.result = None if res is None else OptimizeResult(res)
        best = state.get("best")
        if best is None:
            self._best_x, self._best_f = None, math.inf
        else:
            x = np.asarray(best["x"], dtype=np.float64).reshape(-1)
            n = self.flat_params().n
            if x.shape != (n,):
                raise ValueError(f"state_dict: the saved best point has {x.size} entries but the parameters have {n}")
            self._best_x, self._best_f = x, float(best["f"])

    # ------------------------------------------------------------------ best over the optimizer's life
    def _start_loss(self, ctx: SolveContext) -> tuple[float | None, bool]:
        """The loss at the step's start point, evaluating it once only when nothing else knows it.

        Returns ``(loss, whether this evaluated it)``; the loss is ``None`` when the start need
        not count: it lies outside the bounds, or it was evaluated during the run (then the best
        point seen is at least as good).
        """
        x0, obj = ctx.x0, ctx.objective
        box = ctx.flat.bounds(getattr(self, "flat_bounds", None))
        if box is not None and bool(np.any((x0 < box[0]) | (x0 > box[1]))):
            return None, False
        known = obj.value_at(x0)
        if known is not None:
            return known, False
        if obj.record.start_seen:
            return None, False
        if self._best_x is not None and np.array_equal(self._best_x, x0):
            return self._best_f, False  # the previous step ended here
        try:
            f = obj.value(x0)
        except StopSolve:  # out of time: the start simply does not compete
            return None, False
        return f, True

    def _best_of_life(
        self, ctx: SolveContext, result: OptimizeResult, x: np.ndarray, fun: float
    ) -> tuple[np.ndarray, float]:
        """The better of the step's answer, its start point and the best point of earlier steps.

        Strict improvement only, so ties keep the solver's answer. Updates the record.
        """
        start = result.get("start_fun")
        if start is not None and math.isfinite(start) and (not math.isfinite(fun) or start < fun):
            x, fun = ctx.x0.copy(), float(start)
            note(result, "the start point is better than the solver's answer; parameters stay there")
        n = ctx.flat.n
        if self._best_x is not None and self._best_x.shape != (n,):
            self._best_x, self._best_f = None, math.inf  # the parameters changed shape: a new record
        if self._best_x is not None and (not math.isfinite(fun) or self._best_f < fun):
            x, fun = self._best_x.copy(), self._best_f
            note(result, "an earlier step found a better point; parameters hold it")
        elif math.isfinite(fun) and fun <= self._best_f:  # on a tie the record follows the parameters
            self._best_x, self._best_f = np.array(x, dtype=np.float64), float(fun)
        return x, fun

    # ------------------------------------------------------------------ internals
    def _best_result(self, ctx: SolveContext, message: str) -> OptimizeResult:
        obj = ctx.objective
        have = obj.best_x is not None
        x = obj.best_x.copy() if have else ctx.x0.copy()  # type: ignore[union-attr]
        return OptimizeResult(
            x=x,
            fun=obj.best_f if have else math.nan,
            success=False,
            status=-1,
            message=message,
            nit=0,
        )

    def _write_answer(self, ctx: SolveContext, result: OptimizeResult) -> float:
        """Write the answer into the parameters and its gradient (when known) into ``.grad``.

        Fills ``result``'s counters; returns the answer's loss. No closure runs; no known gradient: ``.grad = None``.
        """
        obj, flat = ctx.objective, ctx.flat
        obj.release()  # the answer's write bumps the tensors' version counters
        x = np.asarray(result.get("x", ctx.x0), dtype=np.float64).reshape(-1)
        fun = _as_float(result.get("fun", math.nan))
        if self._answer_is_best() and obj.best_x is not None and (not math.isfinite(fun) or obj.best_f < fun):
            x, fun = obj.best_x.copy(), obj.best_f
        no_finite = obj.best_x is None and obj.n_nonfinite > 0  # e.g. COBYLA's 1e30 stand-in for NaN
        if no_finite or x.shape != (flat.n,) or not np.all(np.isfinite(x)) or not math.isfinite(fun):
            if obj.best_x is not None:
                x, fun = obj.best_x.copy(), obj.best_f
                extra = "the solver's answer was not finite; parameters hold the best finite point seen"
            else:
                x, fun = ctx.x0.copy(), math.nan
                extra = "no finite loss was seen; parameters were left at the start"
            if result.get("message") and extra not in str(result.message):
                result.message = f"{result.message} ({extra})"
            else:
                result.message = extra
            result.success = False
        if self._answer_is_best():
            x, fun = self._best_of_life(ctx, result, x, fun)
        x = flat.round_integers(x)
        flat.write(x)
        g = obj.gradient_at(x) if math.isfinite(fun) else None  # no gradient at a point of non-finite loss
        if g is not None:
            flat.set_grad(g)
        else:  # no gradient was computed at the answer: leave none rather than a trial point's
            flat.clear_grad()
        known = obj.value_at(x)
        if known is not None and math.isfinite(known):
            fun = known
        result.x = x
        result.fun = fun
        result.nfev = obj.nfev - int(bool(result.get("start_evaluated", False)))  # the solver's evaluations
        result.njev = obj.ngev
        result.nhev = obj.nhev
        if obj.n_nonfinite:
            result.n_nonfinite = obj.n_nonfinite
        return fun


def materialize_params(params: Any) -> list[Any]:
    """``params`` as a list, each group's ``params`` a list too (generators are consumed once).

    Raises:
        TypeError: a single tensor instead of an iterable.
    """
    if isinstance(params, torch.Tensor):
        raise TypeError("params: expected an iterable of tensors or of param-group dicts, got a single Tensor")
    out: list[Any] = []
    for item in params:
        if isinstance(item, Mapping) and not isinstance(item.get("params"), (torch.Tensor, list)):
            item = {**item, "params": list(item["params"])}
        out.append(item)
    return out


def _as_float(v: Any) -> float:
    try:
        return float(np.asarray(v, dtype=np.float64).reshape(-1)[0]) if np.size(v) else math.nan
    except (TypeError, ValueError):
        return math.nan
