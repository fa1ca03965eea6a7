"""BridgeOptimizer: the ``torch.optim.Optimizer`` side of every external-solver wrapper.

It owns the ``step(closure)`` lifecycle shared by all wrappers:

1. read the parameters into a flat float64 vector (:class:`FlatParams`);
2. wrap the closure in a memoized, counted :class:`Objective`;
3. run the solver (the subclass's :meth:`BridgeOptimizer._solve`) with BLAS threads limited;
4. write the answer back in place, with ``p.grad`` matching it when a gradient was computed,
   and return the loss there.

If the closure raises or the run is interrupted, the parameters are set to the best finite
point seen (or left at the start) and the exception propagates; a timeout or a callback
that returns ``True`` ends the run cleanly with ``result.success = False``.

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

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import OptimizeResult

from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import NonFinitePolicy, Objective, StopSolve
from torchzero_bridge.core.progress import Progress
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


class BridgeOptimizer(torch.optim.Optimizer):
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

    # ------------------------------------------------------------------ public
    @property
    def res(self) -> OptimizeResult | None:
        """Alias of :attr:`result` (the name gngdb's pytorch-minimize uses)."""
        return self.result

    def flat_params(self) -> FlatParams:
        """The flat layout of the current parameter groups."""
        return FlatParams(self.param_groups, allow_integer=self.allow_integer)

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
        objective = Objective(
            flat,
            closure,
            deadline=deadline,
            timeout=self.timeout,
            on_eval=bar.update,
            on_evals=bar.update_many,
            nonfinite=self.nonfinite,
            **self._objective_options(),  # type: ignore[arg-type]
        )
        ctx = SolveContext(flat, objective, x0, self.callback)
        try:
            with limit_threads(self.threads):
                result = self._solve(ctx)
        except StopSolve as stop:
            result = self._best_result(ctx, stop.reason)
        except BaseException as exc:
            self.result = self._best_result(ctx, f"interrupted by {type(exc).__name__}: {exc}")
            self._write_answer(ctx, self.result)
            raise
        finally:
            bar.close()
        self.result = result
        loss = self._write_answer(ctx, result)
        return torch.tensor(loss, dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state plus the wrapper's own (options, last result)."""
        sd = super().state_dict()
        sd["bridge"] = copy.deepcopy(self._bridge_state())
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        state_dict = dict(state_dict)
        bridge = state_dict.pop("bridge", None)
        super().load_state_dict(state_dict)
        if bridge is not None:
            self._load_bridge_state(copy.deepcopy(bridge))

    # ------------------------------------------------------------------ for subclasses
    def _solve(self, ctx: SolveContext) -> OptimizeResult:
        """Run the solver; return its ``OptimizeResult`` (``x``, ``fun``, ``success``...)."""
        raise NotImplementedError

    def _objective_options(self) -> dict[str, Any]:
        """Keyword arguments for the :class:`Objective` (``hvp_method``, ``uses_hessian``)."""
        return {}

    def _answer_is_best(self) -> bool:
        """Population/sampling methods answer with the best point seen, not ``result.x``."""
        return False

    def _bridge_state(self) -> dict[str, Any]:
        """What a later ``step`` needs beyond torch's param groups."""
        return {"result": None if self.result is None else dict(self.result)}

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        res = state.get("result")
        self.result = None if res is None else OptimizeResult(res)

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

        Fills the counters of ``result`` and returns the loss at the answer. No closure runs
        here: where no gradient was computed at the answer, ``.grad`` is set to ``None``.
        """
        obj, flat = ctx.objective, ctx.flat
        obj.release()  # the answer's write bumps the tensors' version counters
        x = np.asarray(result.get("x", ctx.x0), dtype=np.float64).reshape(-1)
        fun = _as_float(result.get("fun", math.nan))
        if self._answer_is_best() and obj.best_x is not None and (not math.isfinite(fun) or obj.best_f < fun):
            x, fun = obj.best_x.copy(), obj.best_f
        if x.shape != (flat.n,) or not np.all(np.isfinite(x)) or not math.isfinite(fun):
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
        x = flat.round_integers(x)
        flat.write(x)
        g = obj.gradient_at(x)
        if g is not None:
            flat.set_grad(g)
        else:  # no gradient was computed at the answer: leave none rather than a trial point's
            flat.clear_grad()
        known = obj.value_at(x)
        if known is not None and math.isfinite(known):
            fun = known
        result.x = x
        result.fun = fun
        result.nfev = obj.nfev
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
