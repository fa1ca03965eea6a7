"""BasinHoppingWrapper: ``scipy.optimize.basinhopping`` as a torch optimizer.

Drop-in for gngdb's ``BasinHoppingWrapper(params, minimizer_args, basinhopping_kwargs)``; the
options may also be given as keywords. The local minimizations use exact autograd gradients
(and Hessian-vector products for methods that take them) from the memoized objective.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> w = torch.tensor([2.0, -1.0], dtype=torch.float64, requires_grad=True)
    >>> opt = tzb.BasinHoppingWrapper([w], {"method": "L-BFGS-B"}, {"niter": 3, "rng": 0})
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
from scipy.optimize import OptimizeResult, basinhopping

from torchzero_bridge.core.base import SolveContext, UserCallback
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import NonFinitePolicy
from torchzero_bridge.core.threads import ThreadsSpec
from torchzero_bridge.scipy._global import GlobalWrapper, result_callback

__all__ = ["BasinHoppingWrapper"]


class BasinHoppingWrapper(GlobalWrapper):
    """``scipy.optimize.basinhopping`` as a ``torch.optim.Optimizer``.

    The first local minimization starts at the current parameters. Bounds are optional:
    per-group ``bounds=(lo, hi)`` or ``minimizer_args["bounds"]`` go to the local minimizer
    (default method then L-BFGS-B) and the start is clipped into them with a warning. The
    parameters end at scipy's ``result.x`` (the lowest minimum found).

    Args:
        params: tensors or param-group dicts.
        minimizer_args: ``minimize`` arguments for the local searches (``method``, ``jac``,
            ``hess``, ``hessp``, ``bounds``, ``constraints``, ``tol``, ``options``,
            ``callback``), as for :class:`~torchzero_bridge.MinimizeWrapper`. Default:
            scipy's choice of method with exact gradients.
        basinhopping_kwargs: gngdb-style dict of ``basinhopping`` arguments (``niter``,
            ``T``, ``stepsize``, ``take_step``, ``accept_test``, ``interval``, ``disp``,
            ``niter_success``, ``rng``/``seed``, ``target_accept_rate``,
            ``stepwise_factor``, ``minimizer_kwargs`` (same as ``minimizer_args``), ``callback``).
        hvp_method: Hessian-vector products for local methods that use them
            (``"autograd"``, ``"forward"``, ``"central"``).
        callback: called after each hop with an ``OptimizeResult`` (``x``, ``fun``,
            ``accept``); returning ``True`` stops.
        timeout: seconds before the run stops cleanly.
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while scipy runs.
        nonfinite: how NaN/inf losses are reported to scipy.
        **keywords: any ``basinhopping`` argument, as in ``basinhopping_kwargs``.

    Raises:
        ValueError: bad bounds, an option given twice, unknown local method.
        TypeError: unknown option names, integer tensors.
    """

    solver = staticmethod(basinhopping)
    options_name = "basinhopping_kwargs"
    has_local_search = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        minimizer_args: Mapping[str, Any] | None = None,
        basinhopping_kwargs: Mapping[str, Any] | None = None,
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
            basinhopping_kwargs,
            keywords,
            callback=callback,
            timeout=timeout,
            progress=progress,
            threads=threads,
            nonfinite=nonfinite,
            hvp_method=hvp_method,
        )
        self._warn_unbounded_local(self.flat_params().bounds(), "the param groups' bounds are ignored")

    def _local_defaults(self, args: dict[str, Any], flat: FlatParams) -> None:
        if args.get("method") is None and args.get("bounds") is None and flat.bounds() is not None:
            args["method"] = "L-BFGS-B"  # what minimize picks for bounded problems

    def _answer_is_best(self) -> bool:
        return False

    def _run(self, ctx: SolveContext, kwargs: dict[str, Any]) -> OptimizeResult:
        flat = ctx.flat
        fun, minimizer_kwargs = self._local(ctx, flat.bounds())
        x0 = ctx.x0
        box = minimizer_kwargs.get("bounds")
        if box is not None:
            x0 = flat.layout.clip_start(x0, box.lb, box.ub)
        if self._wants_callback():
            kwargs["callback"] = result_callback(ctx, ("accept",))
        return basinhopping(fun, x0, minimizer_kwargs=minimizer_kwargs, **kwargs)
