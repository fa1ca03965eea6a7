"""MinimizeWrapper: every ``scipy.optimize.minimize`` method as a torch optimizer.

Drop-in for gngdb's pytorch-minimize (``MinimizeWrapper(params, minimizer_args)``) and also
configurable with keywords. Gradients come from autograd, Hessian-vector products from
double backward (or finite differences of gradients), and torch constraints get exact
Jacobians.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> model = torch.nn.Linear(3, 1)
    >>> X, y = torch.randn(32, 3), torch.randn(32, 1)
    >>> opt = tzb.MinimizeWrapper(model.parameters(), {"method": "L-BFGS-B"})
    >>> def closure(backward=True):
    ...     opt.zero_grad()
    ...     loss = torch.nn.functional.mse_loss(model(X), y)
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> loss = opt.step(closure)
    >>> opt.result.success
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from scipy.optimize import Bounds, OptimizeResult, minimize

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.base import BridgeOptimizer, SolveContext
from torchzero_bridge.core.objective import HVP_METHODS, NonFinitePolicy
from torchzero_bridge.core.param_checks import estimator_group_keys
from torchzero_bridge.core.threads import ThreadsSpec
from torchzero_bridge.errors import IgnoredOptionWarning
from torchzero_bridge.scipy._callables import (
    _merge_args,
    _resolve_method,
    _validate_jac,
    builtin_hessian,
    estimator_of,
    minimize_callables,
    resolve_jac,
    solver_counts_gradients,
    warn_unused_hvp_method,
)
from torchzero_bridge.scipy.constraints import convert_constraints
from torchzero_bridge.scipy.methods import CUSTOM
from torchzero_bridge.scipy.option_checks import check_minimize_args

__all__ = [
    "MinimizeWrapper",
    "builtin_hessian",
    "minimize_callables",
    "resolve_jac",
    "solver_counts_gradients",
    "warn_unused_hvp_method",
]


class MinimizeWrapper(BridgeOptimizer):
    """``scipy.optimize.minimize`` as a ``torch.optim.Optimizer``; one ``step`` is one solve.

    Args:
        params: tensors or param-group dicts; a group may carry ``bounds=(lo, hi)`` with
            scalars, tensors shaped like its parameters, or ``None``.
        minimizer_args: gngdb-style dict of ``minimize`` arguments (``method``, ``jac``,
            ``hess``, ``hessp``, ``bounds``, ``constraints``, ``tol``, ``options``,
            ``callback``). Not modified. Keywords below may be used instead; a keyword left
            at its default (``None``, or ``"auto"`` for ``jac``) counts as not given, so the
            value in ``minimizer_args`` (or the resolution described below) applies.
        method: a ``minimize`` method name (case-insensitive) or a callable method. Default:
            scipy's choice (BFGS, L-BFGS-B with bounds, SLSQP with constraints).
        jac: ``"auto"`` (default: the exact autograd gradient for methods that use one,
            nothing for derivative-free methods), ``True`` (exact autograd gradient), ``False``
            or ``None`` (scipy's own finite differences), ``"2-point"``, ``"3-point"``, a
            callable ``jac(x)``, or a gradient estimator with ``make_scipy_jac(objective)``.
        hess: for methods that take a Hessian: a callable ``hess(x)``, ``"2-point"``,
            ``"3-point"`` or a ``HessianUpdateStrategy``; default exact (autograd).
        hessp: a callable ``hessp(x, p)`` overriding the built-in products.
        bounds: flat scipy-style bounds (``Bounds`` or ``n`` pairs); or use per-group bounds.
        constraints: scipy constraints, or torch constraints (zero-argument functions of the
            parameters) with exact autograd Jacobians.
        tol: scipy's ``tol``.
        options: scipy's ``options`` dict for the method.
        hvp_method: ``"autograd"`` (default), ``"forward"`` or ``"central"``. With a gradient
            estimator as ``jac``, ``"forward"``/``"central"`` difference the estimator's
            gradients, so Newton-type methods run with no backward pass at all.
        callback: called after each iteration with an ``OptimizeResult``; return ``True``
            to stop.
        timeout: seconds before the run stops cleanly.
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while scipy runs (``"auto"``, an int, or ``None``).
        nonfinite: how NaN/inf losses are reported to scipy (``"inf"``, ``"raise"``, ``"pass"``).

    Raises:
        ValueError: unknown method, bad ``jac``/``hvp_method``, conflicting arguments.
        TypeError: ``minimizer_args`` is not a dict or holds unknown keys.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        minimizer_args: Mapping[str, Any] | None = None,
        *,
        method: str | Callable[..., Any] | None = None,
        jac: Any = "auto",
        hess: Any = None,
        hessp: Any = None,
        bounds: Any = None,
        constraints: Any = None,
        tol: float | None = None,
        options: Mapping[str, Any] | None = None,
        hvp_method: str = "autograd",
        callback: Callable[[OptimizeResult], Any] | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
    ) -> None:
        args = _merge_args(
            minimizer_args,
            method=method,
            jac=jac,
            hess=hess,
            hessp=hessp,
            bounds=bounds,
            constraints=constraints,
            tol=tol,
            options=options,
            callback=callback,
        )
        check_minimize_args(args, "MinimizeWrapper")
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"hvp_method: expected one of {HVP_METHODS}, got {hvp_method!r}")
        self.minimizer_args = args
        self.hvp_method = hvp_method
        self.info = _resolve_method(args)
        warn_unused_hvp_method(args, self.info, hvp_method)
        super().__init__(
            params,
            {},
            callback=args.get("callback"),
            timeout=timeout,
            progress=progress,
            threads=threads,
            nonfinite=nonfinite,
        )
        _validate_jac(args.get("jac", "auto"), self.info)
        has_bounds = self.flat_params().bounds(args.get("bounds")) is not None  # validates now
        if has_bounds and not self.info.bounds:
            warn_user(
                f"method {self.info.name} cannot handle bounds; they are ignored "
                "(use L-BFGS-B, TNC, SLSQP, Powell, Nelder-Mead, COBYLA, COBYQA or trust-constr)",
                IgnoredOptionWarning,
            )

    # ------------------------------------------------------------------ gngdb's helpers
    def ravel_pack(self, tensors: Iterable[torch.Tensor]) -> np.ndarray:
        """gngdb's helper: ``tensors`` concatenated into one flat float64 numpy vector.

        Example:
            >>> import torch
            >>> opt = MinimizeWrapper([torch.zeros(2)], method="CG")
            >>> opt.ravel_pack([torch.ones(2), torch.zeros(1)]).tolist()
            [1.0, 1.0, 0.0]
        """
        parts = [t.detach().to("cpu", torch.float64).reshape(-1).numpy() for t in tensors]
        return np.concatenate(parts) if parts else np.empty(0)

    def np_unravel_unpack(self, x: np.ndarray) -> list[torch.Tensor]:
        """gngdb's helper: flat ``x`` split into tensors shaped like the parameters (their dtype and device).

        Example:
            >>> import numpy as np, torch
            >>> opt = MinimizeWrapper([torch.zeros(2), torch.zeros(1, 2)], method="CG")
            >>> [tuple(t.shape) for t in opt.np_unravel_unpack(np.arange(4.0))]
            [(2,), (1, 2)]
        """
        return self.flat_params().unflatten(np.asarray(x, dtype=np.float64), like_params=True)

    # ------------------------------------------------------------------ hooks
    def _group_keys(self) -> set[str]:
        return super()._group_keys() | estimator_group_keys(self.minimizer_args.get("jac"))  # e.g. a group's h

    def _objective_options(self) -> dict[str, Any]:
        return {
            "hvp_method": self.hvp_method,
            "uses_hessian": self._builtin_hessian() is not None,
            "gradient_estimator": estimator_of(self.minimizer_args, self.info),
        }

    def _builtin_hessian(self) -> str | None:
        """``"hessp"``/``"dense"`` when we supply second derivatives ourselves."""
        return builtin_hessian(self.minimizer_args, self.info, self.hvp_method)

    def _bridge_state(self) -> dict[str, Any]:
        state = super()._bridge_state()
        state["minimizer_args"] = {k: v for k, v in self.minimizer_args.items() if k != "callback"}
        state["hvp_method"] = self.hvp_method
        return state

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        super()._load_bridge_state(state)
        if "minimizer_args" in state:
            # objects a state cannot hold (callback, a callable method or jac) stay the constructor's
            args = {**self.minimizer_args, **state["minimizer_args"]}
            if "callback" in self.minimizer_args:
                args["callback"] = self.minimizer_args["callback"]
            self.minimizer_args = args
            self.info = _resolve_method(args)
        self.hvp_method = state.get("hvp_method", self.hvp_method)

    # ------------------------------------------------------------------ solve
    def _solve(self, ctx: SolveContext) -> OptimizeResult:
        a = self.minimizer_args
        info = self.info
        flat = ctx.flat
        fun, kwargs = minimize_callables(a, info, ctx.objective, flat, ctx.x0)

        bounds = flat.bounds(a.get("bounds")) if info.bounds else None
        if bounds is not None:
            lo, hi = bounds
            ctx.x0 = flat.layout.clip_start(ctx.x0, lo, hi)
            kwargs["bounds"] = Bounds(lo, hi)
        constraints, _ = convert_constraints(a.get("constraints"), flat, objects=info.key == "trust-constr")
        if constraints:
            kwargs["constraints"] = constraints
        if a.get("tol") is not None:
            kwargs["tol"] = a["tol"]

        method = a["method"] if info is CUSTOM else info.name
        self._iterations = 0

        def callback(intermediate_result: OptimizeResult) -> None:
            self._iterations += 1  # scipy calls back once per iteration: `nit` if the run stops early
            ctx.callback(intermediate_result)

        result = minimize(fun, ctx.x0, method=method, callback=callback, **kwargs)
        if solver_counts_gradients(resolve_jac(a.get("jac", "auto"), info)):
            ctx.objective.count_gradients(int(result.get("njev", 0)))  # scipy's own finite differences
        return result

    _iterations = 0

    def _best_result(self, ctx: SolveContext, message: str) -> OptimizeResult:
        result = super()._best_result(ctx, message)
        result.nit = self._iterations  # the iterations that ran before the stop
        return result
