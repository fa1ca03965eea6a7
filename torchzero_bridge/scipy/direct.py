"""DirectWrapper: ``scipy.optimize.direct`` (DIRECT, dividing rectangles) as a torch optimizer.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> w = torch.tensor([2.0, -1.0], dtype=torch.float64)
    >>> opt = tzb.DirectWrapper([{"params": [w], "bounds": (-3.0, 3.0)}], {"maxfun": 500})
    >>> loss = opt.step(lambda: ((w - 1.0) ** 2).sum())
    >>> [round(v, 2) for v in w.tolist()]
    [1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from scipy.optimize import Bounds, OptimizeResult, direct

from torchzero_bridge.core.base import SolveContext, UserCallback
from torchzero_bridge.core.objective import NonFinitePolicy
from torchzero_bridge.core.threads import ThreadsSpec
from torchzero_bridge.scipy._global import GlobalWrapper, require_bounds, result_callback

__all__ = ["DirectWrapper"]


class DirectWrapper(GlobalWrapper):
    """``scipy.optimize.direct`` as a ``torch.optim.Optimizer``.

    DIRECT is deterministic and derivative-free; it divides the box from its centre, so the
    current parameter values are not used as a start. The parameters end at the best point
    evaluated.

    Args:
        params: tensors or param-group dicts. Every entry needs finite bounds: a group's
            ``bounds=(lo, hi)`` or flat scipy-style ``bounds`` in ``direct_kwargs``.
        direct_kwargs: dict of ``direct`` arguments (``bounds``, ``eps``, ``maxfun``,
            ``maxiter``, ``locally_biased``, ``f_min``, ``f_min_rtol``, ``vol_tol``,
            ``len_tol``, ``callback``).
        callback: called after each iteration with an ``OptimizeResult`` (``x``, ``fun``);
            returning ``True`` stops.
        timeout: seconds before the run stops cleanly.
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while scipy runs.
        nonfinite: how NaN/inf losses are reported to scipy.
        **keywords: any ``direct`` argument, as in ``direct_kwargs``.

    Raises:
        ValueError: missing or infinite bounds (naming the tensor), ``lo > hi``, wrong shape,
            an option given twice.
        TypeError: unknown option names, integer tensors.
    """

    solver = staticmethod(direct)
    options_name = "direct_kwargs"

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        direct_kwargs: Mapping[str, Any] | None = None,
        *,
        callback: UserCallback | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
        **keywords: Any,
    ) -> None:
        super().__init__(
            params,
            None,
            direct_kwargs,
            keywords,
            callback=callback,
            timeout=timeout,
            progress=progress,
            threads=threads,
            nonfinite=nonfinite,
        )

    def _check_bounds(self) -> None:
        require_bounds(self.flat_params(), self.flat_bounds, type(self).__name__)

    def _run(self, ctx: SolveContext, kwargs: dict[str, Any]) -> OptimizeResult:
        lo, hi = require_bounds(ctx.flat, self.flat_bounds, type(self).__name__)
        if self._wants_callback():
            kwargs["callback"] = result_callback(ctx)
        return direct(ctx.objective.value, Bounds(lo, hi), **kwargs)
