"""The local searches of the global ``scipy.optimize`` wrappers, and their search boxes.

* :func:`require_bounds`: the search box, or an error naming the tensor that lacks bounds.
* :func:`local_box`: the box a local search gets: ``bounds`` given in the minimizer arguments,
  else the problem's own box (per-group bounds, or the global solver's bounds).
* :func:`local_minimizer`: the ``fun`` and ``minimizer_kwargs`` a global solver hands
  ``scipy.optimize.minimize`` for its local searches, built from the memoized objective
  exactly as :class:`~torchzero_bridge.MinimizeWrapper` builds its own call.
* :class:`LocalMethod`: the ``method`` of those ``minimizer_kwargs``. It is the method's name
  (a ``str``, so solvers that read the name, like SHGO, see it) and a callable custom method
  that runs ``scipy.optimize.minimize`` with that method as one local search. While it runs,
  the objective computes gradients along with values; outside local searches the global
  solver's own evaluations (annealing visits, sampling points) are value-only and run no
  backward pass.

Example:
    >>> import torch
    >>> from torchzero_bridge.core import FlatParams
    >>> w = torch.zeros(2)
    >>> lo, hi = require_bounds(FlatParams([{"params": [w], "bounds": (-1.0, 1.0)}]), None, "DIRECT")
    >>> lo.tolist(), hi.tolist()
    ([-1.0, -1.0], [1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.optimize import Bounds, OptimizeResult, minimize

from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import Objective
from torchzero_bridge.scipy._callables import minimize_callables, resolve_jac, solver_counts_gradients
from torchzero_bridge.scipy.constraints import convert_constraints
from torchzero_bridge.scipy.methods import CUSTOM, MethodInfo

__all__ = ["LocalMethod", "local_box", "local_minimizer", "require_bounds"]


def require_bounds(
    flat: FlatParams, flat_bounds: Any, solver: str, *, finite: bool = True, bool_default: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The search box of a solver that needs one (:meth:`~torchzero_bridge.core.layout.Layout.require_box`).

    Args:
        flat: the parameter layout (its groups may carry ``bounds=(lo, hi)``).
        flat_bounds: scipy-style bounds over the flat vector, or ``None``.
        solver: the solver's name, for messages.
        finite: every entry must have finite bounds (else only *some* bounds must be given).
        bool_default: boolean tensors without bounds get ``[0, 1]``.

    Returns:
        ``(lo, hi)`` float64 vectors.

    Raises:
        ValueError: no bounds at all, or (with ``finite``) an entry without finite bounds; the
            message names the tensor and element. Also the errors of
            :meth:`~torchzero_bridge.core.layout.Layout.bounds` (``lo > hi``, wrong shape or length).

    Example:
        >>> import torch
        >>> from torchzero_bridge.core import FlatParams
        >>> flat = FlatParams([torch.zeros(1, dtype=torch.bool)], allow_integer=True)
        >>> require_bounds(flat, None, "DE", bool_default=True)[1].tolist()
        [1.0]
    """
    return flat.layout.require_box(flat_bounds, solver, finite=finite, bool_default=bool_default)


def local_box(
    args: Mapping[str, Any], flat: FlatParams, box: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The box of a global solver's local searches.

    ``bounds`` in the minimizer arguments (scipy-style, over the flat vector) win; they may be
    given together with per-group bounds, which then bound the global search only. Otherwise
    the local searches get ``box``, the problem's own box.

    Args:
        args: normalized ``minimize`` arguments of the local method.
        flat: the parameter layout.
        box: the global search's ``(lo, hi)``, or ``None``.

    Returns:
        ``(lo, hi)``, or ``None`` when nothing is bounded.

    Raises:
        ValueError: malformed ``bounds`` (wrong length, a pair that is not a pair, ``lo > hi``).

    Example:
        >>> import numpy as np, torch
        >>> from torchzero_bridge.core import FlatParams
        >>> flat = FlatParams([{"params": [torch.zeros(2)], "bounds": (-1.0, 1.0)}])
        >>> local_box({}, flat, flat.bounds())[1].tolist()
        [1.0, 1.0]
        >>> local_box({"bounds": [(0, 0.5), (0, 0.5)]}, flat, flat.bounds())[1].tolist()
        [0.5, 0.5]
    """
    given = args.get("bounds")
    if given is None:
        return box
    return flat.layout.flat_box(given, "minimizer_args['bounds']")


class LocalMethod(str):
    """A ``minimize`` method name that, called as scipy's custom method, runs one local search.

    The string is the method's name (``"L-BFGS-B"``; ``"_custom"`` for a callable method), so
    a global solver that inspects ``minimizer_kwargs["method"]`` sees what it expects.
    ``scipy.optimize.minimize`` treats it as a callable method and calls it with the local
    problem; it then calls ``minimize`` again with the real method, unchanged arguments and
    options, so the local search is exactly scipy's.

    Args:
        name: the string value.
        method: the real method (a name or a callable).
        objective: the memoized objective; it computes gradients along with values during
            the search when ``exact``.
        exact: the local search uses exact gradients from the objective.
        jac: a finite-difference ``jac`` (``"2-point"``/``"3-point"``) to restore (scipy hands a
            custom method ``None`` instead), or ``None``.
        counts_gradients: add the search's ``njev`` to the objective's count (gradients scipy
            computed itself: finite differences or a user's ``jac``).

    Example:
        >>> import numpy as np, torch
        >>> from scipy.optimize import minimize
        >>> from torchzero_bridge.core import FlatParams, Objective
        >>> w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        >>> obj = Objective(FlatParams([w]), lambda: ((w - 1.0) ** 2).sum())
        >>> method = LocalMethod("BFGS", "BFGS", obj, exact=False, jac="2-point", counts_gradients=True)
        >>> res = minimize(obj.value, np.zeros(2), method=method, jac="2-point")
        >>> method.lower(), bool(res.success), obj.ngev == res.njev > 0
        ('bfgs', True, True)
    """

    method: str | Callable[..., OptimizeResult]
    objective: Objective
    exact: bool
    jac: str | None
    counts_gradients: bool

    def __new__(
        cls,
        name: str,
        method: str | Callable[..., OptimizeResult],
        objective: Objective,
        *,
        exact: bool,
        jac: str | None = None,
        counts_gradients: bool = False,
    ) -> LocalMethod:
        self = super().__new__(cls, name)
        self.method = method
        self.objective = objective
        self.exact = exact
        self.jac = jac
        self.counts_gradients = counts_gradients
        return self

    def __call__(
        self,
        fun: Callable[..., float],
        x0: np.ndarray,
        args: tuple[Any, ...] = (),
        jac: Any = None,
        hess: Any = None,
        hessp: Any = None,
        bounds: Any = None,
        constraints: Any = (),
        callback: Callable[..., Any] | None = None,
        **options: Any,
    ) -> OptimizeResult:
        tol = options.pop("tol", None)  # minimize moves `tol` into a custom method's options
        obj = self.objective
        with obj.local_search(self.exact):
            res = minimize(
                fun,
                x0,
                args=args,
                method=self.method,
                jac=self.jac if self.jac is not None else jac,
                hess=hess,
                hessp=hessp,
                bounds=bounds,
                constraints=constraints,
                tol=tol,
                callback=callback,
                options=options,
            )
        if self.counts_gradients:
            obj.count_gradients(int(res.get("njev", 0)))
        return res

    def __copy__(self) -> LocalMethod:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> LocalMethod:
        return self  # bound to this solve's objective: copies of minimizer_kwargs share it


def local_minimizer(
    args: Mapping[str, Any],
    info: MethodInfo,
    objective: Objective,
    flat: FlatParams,
    box: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Callable[..., float], dict[str, Any]]:
    """``fun`` and ``minimizer_kwargs`` for a global solver's local searches.

    Gradients and Hessian-vector products come from the memoized ``objective`` (see
    :func:`~torchzero_bridge.scipy.minimize.minimize_callables`). The returned ``fun`` is
    value-only outside local searches; ``minimizer_kwargs["method"]`` is a
    :class:`LocalMethod` that makes it compute the gradient along with every value during a
    local search with exact gradients, so a local search never runs the closure twice at one
    point and the global search never runs a backward pass.

    Args:
        args: normalized ``minimize`` arguments (``method`` always set).
        info: the method's capabilities.
        objective: the memoized objective of this solve.
        flat: the parameter layout.
        box: the problem's ``(lo, hi)``; the local searches get it (see :func:`local_box`)
            when the method accepts bounds.

    Returns:
        ``(fun, minimizer_kwargs)``.

    Example:
        >>> import torch
        >>> from torchzero_bridge.core import FlatParams, Objective
        >>> from torchzero_bridge.scipy.methods import method_info
        >>> w = torch.zeros(2, requires_grad=True)
        >>> flat = FlatParams([w])
        >>> fun, kw = local_minimizer({"method": "BFGS"}, method_info("BFGS"), Objective(flat, lambda: w.sum()), flat)
        >>> kw["method"], kw["jac"] == fun.__self__.grad, fun == fun.__self__.global_fun
        ('BFGS', True, True)
    """
    fun, kwargs = minimize_callables(args, info, objective, flat)
    jac_kind = resolve_jac(args.get("jac", "auto"), info)
    if jac_kind == "exact":
        fun = objective.global_fun  # value-only outside the local searches
    jac = kwargs.get("jac")
    kwargs["method"] = LocalMethod(
        "_custom" if info is CUSTOM else info.name,
        args["method"] if info is CUSTOM else info.name,
        objective,
        exact=jac_kind == "exact",
        jac=jac if isinstance(jac, str) else None,
        counts_gradients=solver_counts_gradients(jac_kind),
    )
    if not kwargs["options"] and args.get("options") is None:
        del kwargs["options"]
    lbox = local_box(args, flat, box) if info.bounds else None
    if lbox is not None:
        kwargs["bounds"] = Bounds(*lbox)
    constraints, _ = convert_constraints(args.get("constraints"), flat)
    if constraints:
        kwargs["constraints"] = constraints
    for key in ("tol", "callback"):
        if args.get(key) is not None:
            kwargs[key] = args[key]
    return fun, kwargs
