"""SHGOWrapper: ``scipy.optimize.shgo`` (simplicial homology global optimization) as a torch optimizer.

Drop-in for gngdb's ``SHGOWrapper(params, minimizer_args, shgo_kwargs)``; the options may also
be given as keywords. The local minimizations use exact autograd gradients from the memoized
objective.

Where gradients are computed (chosen by measurement): the sampling points are value-only, and
inside a local search every value comes with its gradient. On a 4-parameter damped-oscillator
fit (300 samples, ``n=256``, Sobol sampling, SLSQP) this takes 536 closure runs with 293
backward passes (SLSQP asked for 214 gradients) in 0.99 s. A gradient at every sampling point
as well cost 536 backward passes in 1.20 s: scipy evaluates a local search's start point
again, so those gradients are never used. Gradients strictly on request cost 750 closure runs
(214 backward) in 1.20 s: SLSQP asks for the gradient right after the value at most points,
and each request then needs a second run.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> w = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    >>> opt = tzb.SHGOWrapper([{"params": [w], "bounds": (-3.0, 3.0)}])
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

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from scipy.optimize import Bounds, OptimizeResult, shgo

from torchzero_bridge._preload import preload
from torchzero_bridge.core.base import SolveContext, UserCallback
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import NonFinitePolicy
from torchzero_bridge.core.threads import ThreadsSpec
from torchzero_bridge.scipy._global import GlobalWrapper, require_bounds

__all__ = ["SHGOWrapper"]


class SHGOWrapper(GlobalWrapper):
    """``scipy.optimize.shgo`` as a ``torch.optim.Optimizer``.

    SHGO samples the whole box, so the current parameter values are not used as a start.
    The parameters end at the best point evaluated (scipy's ``result.x`` or better).

    Args:
        params: tensors or param-group dicts. Bounds are required: a group's
            ``bounds=(lo, hi)`` or flat scipy-style ``bounds`` in ``shgo_kwargs``
            (``None``/infinite entries are allowed, as in scipy).
        minimizer_args: ``minimize`` arguments for the local searches (as for
            :class:`~torchzero_bridge.MinimizeWrapper`). Default: scipy's (SLSQP with
            ``ftol=1e-12``), with exact gradients.
        shgo_kwargs: gngdb-style dict of ``shgo`` arguments (``bounds``, ``constraints``,
            ``n``, ``iters``, ``options``, ``sampling_method``, ``workers``,
            ``minimizer_kwargs`` (same as ``minimizer_args``), ``callback``). ``jac``,
            ``hess`` and ``hessp`` inside ``options`` configure the local minimizer.
        hvp_method: Hessian-vector products for local methods that use them.
        callback: called after each local-minimizer iteration with an ``OptimizeResult``
            (``x``, ``fun``); returning ``True`` stops.
        timeout: seconds before the run stops cleanly.
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while scipy runs.
        nonfinite: how NaN/inf losses are reported to scipy.
        **keywords: any ``shgo`` argument, as in ``shgo_kwargs``.

    Raises:
        ValueError: no bounds (naming the first tensor), ``lo > hi``, wrong shape, an option
            given twice.
        TypeError: unknown option names, integer tensors.
    """

    solver = staticmethod(shgo)
    options_name = "shgo_kwargs"
    has_local_search = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        minimizer_args: Mapping[str, Any] | None = None,
        shgo_kwargs: Mapping[str, Any] | None = None,
        *,
        hvp_method: str = "autograd",
        callback: UserCallback | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
        **keywords: Any,
    ) -> None:
        super().__init__(
            params,
            minimizer_args,
            shgo_kwargs,
            keywords,
            callback=callback,
            timeout=timeout,
            progress=progress,
            threads=threads,
            nonfinite=nonfinite,
            hvp_method=hvp_method,
        )
        preload("scipy.stats")  # shgo's sampling imports it on first use; not inside a step
        self._warn_unbounded_local(True, "shgo bounds each local search to its own cell")

    def _preprocess(self, kwargs: dict[str, Any], minimizer_args: Mapping[str, Any] | None) -> Any:
        options = kwargs.get("options")
        moved = {k: options[k] for k in ("jac", "hess", "hessp") if isinstance(options, Mapping) and k in options}
        if not moved:
            return minimizer_args
        kwargs["options"] = {k: v for k, v in options.items() if k not in moved}  # type: ignore[union-attr]
        args = dict(minimizer_args or {})
        for key, value in moved.items():
            if key in args:
                raise ValueError(f"{key} given both in shgo_kwargs['options'] and in minimizer_args; give it once")
            args[key] = value
        if minimizer_args is None:
            args.setdefault("method", "SLSQP")
            args.setdefault("options", {"ftol": 1e-12})
        return args

    def _local_defaults(self, args: dict[str, Any], flat: FlatParams) -> None:
        if args.get("method") is None:
            args["method"] = "SLSQP"
        if self.default_local:
            args["options"] = {"ftol": 1e-12}

    def _check_bounds(self) -> None:
        require_bounds(self.flat_params(), self.flat_bounds, type(self).__name__, finite=False)

    def _run(self, ctx: SolveContext, kwargs: dict[str, Any]) -> OptimizeResult:
        lo, hi = require_bounds(ctx.flat, self.flat_bounds, type(self).__name__, finite=False)
        fun, minimizer_kwargs = self._local(ctx, None)  # shgo bounds each local search itself
        if self._wants_callback():
            kwargs["callback"] = ctx.callback
        return shgo(fun, Bounds(lo, hi), minimizer_kwargs=minimizer_kwargs, **kwargs)
