"""How a ``minimize`` call is put together from the memoized objective.

The pieces :class:`~torchzero_bridge.MinimizeWrapper` and the global wrappers' local searches
share: which ``jac``/``hess``/``hessp`` to hand scipy (:func:`minimize_callables`), how a
``jac`` argument is classified (:func:`resolve_jac`), which gradients scipy counts itself
(:func:`solver_counts_gradients`), option checks and the start-point clipping.

Example:
    >>> from torchzero_bridge.scipy.methods import method_info
    >>> resolve_jac("3-point", method_info("BFGS")), builtin_hessian({"method": "trust-ncg"}, method_info("trust-ncg"))
    ('3-point', 'hessp')
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import Objective
from torchzero_bridge.errors import IgnoredOptionWarning
from torchzero_bridge.scipy.methods import CUSTOM, MethodInfo, known_options, method_info

__all__ = [
    "ARG_KEYS",
    "builtin_hessian",
    "estimator_of",
    "minimize_callables",
    "resolve_jac",
    "solver_counts_gradients",
    "warn_unused_hvp_method",
]

ARG_KEYS = ("method", "jac", "hess", "hessp", "bounds", "constraints", "tol", "options", "callback")
"""The keys of a gngdb-style ``minimizer_args`` dict."""
_FD_JAC = ("2-point", "3-point")


def builtin_hessian(args: Mapping[str, Any], info: MethodInfo, hvp_method: str = "autograd") -> str | None:
    """``"hessp"``/``"dense"`` when the library supplies second derivatives for ``args``.

    Args:
        args: normalized ``minimize`` arguments (``method``, ``jac``, ``hess``, ``hessp``...).
        info: the method's capabilities.
        hvp_method: how products are formed; ``"forward"``/``"central"`` also serve a
            gradient-estimator ``jac`` (finite differences of its gradients).

    Returns:
        ``info.hess`` when the method takes second derivatives, the user gave none and the
        gradient is exact (autograd) or comes from an estimator differenced by ``hvp_method``;
        else ``None``.

    Example:
        >>> from torchzero_bridge.scipy.methods import method_info
        >>> builtin_hessian({"method": "trust-ncg"}, method_info("trust-ncg"))
        'hessp'
    """
    if info.hess is None or args.get("hess") is not None or args.get("hessp") is not None:
        return None
    if not info.gradient:
        return None
    jac_kind = resolve_jac(args.get("jac", "auto"), info)
    if jac_kind == "exact" or (jac_kind == "estimator" and hvp_method in ("forward", "central")):
        return info.hess
    return None


def warn_unused_hvp_method(args: Mapping[str, Any], info: MethodInfo | None, hvp_method: str) -> None:
    """Warn when a non-default ``hvp_method`` will not be used (promise: no option is dropped silently).

    Args:
        args: normalized ``minimize`` arguments of the (local) method, or ``{}``.
        info: that method's capabilities; ``None`` when no local method runs.
        hvp_method: the requested way of forming Hessian-vector products.

    Example:
        >>> import warnings
        >>> from torchzero_bridge.scipy.methods import method_info
        >>> with warnings.catch_warnings(record=True) as w:
        ...     warnings.simplefilter("always")
        ...     warn_unused_hvp_method({"method": "BFGS"}, method_info("BFGS"), "central")
        >>> "hvp_method='central' is ignored" in str(w[0].message)
        True
    """
    if hvp_method == "autograd" or (info is not None and builtin_hessian(args, info, hvp_method) is not None):
        return
    if info is None:
        why = "no local method runs"
    elif info.hess is None:
        why = f"method {info.name} uses no Hessian"
    elif args.get("hess") is not None or args.get("hessp") is not None:
        why = "the given hess/hessp is used instead"
    else:
        why = f"method {info.name} gets no built-in Hessian with jac={args.get('jac')!r}"
    warn_user(f"hvp_method={hvp_method!r} is ignored: {why}", IgnoredOptionWarning)


def minimize_callables(
    args: Mapping[str, Any], info: MethodInfo, objective: Objective, flat: FlatParams, x0: np.ndarray | None = None
) -> tuple[Callable[..., float], dict[str, Any]]:
    """The ``fun`` and the derivative keywords (``jac``/``hess``/``hessp``/``options``) for ``minimize``.

    Exact gradients come from the memoized ``objective`` (one closure run per point for value
    and gradient); an estimator ``jac`` from the estimator the objective was constructed with
    (``gradient_estimator=``, see :func:`estimator_of`); second derivatives from its
    Hessian-vector products when the method takes them and the user gave none.

    Args:
        args: normalized ``minimize`` arguments.
        info: the method's capabilities.
        objective: the memoized objective of this solve.
        flat: the parameter layout.
        x0: the starting point (scales finite-difference steps for low-precision parameters).

    Returns:
        ``(fun, kwargs)``: the function to hand scipy and keyword arguments holding ``jac``,
        ``hess``/``hessp`` when used, and ``options`` (a copy of ``args["options"]``).

    Example:
        >>> import torch
        >>> from torchzero_bridge.core import FlatParams, Objective
        >>> from torchzero_bridge.scipy.methods import method_info
        >>> w = torch.zeros(2, requires_grad=True)
        >>> flat = FlatParams([w])
        >>> obj = Objective(flat, lambda: (w ** 2).sum())
        >>> fun, kw = minimize_callables({"method": "Nelder-Mead"}, method_info("Nelder-Mead"), obj, flat)
        >>> fun == obj.value, sorted(kw)
        (True, ['options'])
    """
    kwargs: dict[str, Any] = {}
    options = dict(args.get("options") or {})

    jac_kind = resolve_jac(args.get("jac", "auto"), info)
    if jac_kind == "exact":
        fun: Callable[..., float] = objective.fun
        kwargs["jac"] = objective.grad
    elif jac_kind == "none":
        fun = objective.value
    elif jac_kind == "estimator":
        fun = objective.value
        estimate = objective.gradient_source  # built from the estimator when the objective was
        if estimate is None:
            raise ValueError("jac: a gradient estimator must be given to the Objective (gradient_estimator=)")
        kwargs["jac"] = objective.counted(estimate)  # each gradient the solver asks for counts in njev
    else:  # "2-point", "3-point", callable, or scipy's default finite differences
        fun = objective.value
        kwargs["jac"] = None if jac_kind == "scipy-default" else args["jac"]
        _scale_fd_step(jac_kind, info, flat.eps, x0, options, kwargs)

    builtin = builtin_hessian(args, info, objective.hvp_method)
    if builtin == "hessp":
        kwargs["hessp"] = objective.hessp
    elif builtin == "dense":
        kwargs["hess"] = objective.hess
    if args.get("hess") is not None:
        kwargs["hess"] = args["hess"]
    if args.get("hessp") is not None:
        kwargs["hessp"] = args["hessp"]
    if info is CUSTOM:  # the method decides what it uses
        products_ok = objective.hvp_method != "autograd" or objective.adapter.has_graph
        if products_ok and args.get("hess") is None and args.get("hessp") is None:
            kwargs.setdefault("hessp", objective.hessp)  # never for a plain closure, which has no graph
        kwargs.setdefault("hess", objective.hess)
    kwargs["options"] = options
    return fun, kwargs


def _scale_fd_step(
    jac_kind: str, info: MethodInfo, eps: float, x0: np.ndarray | None, options: dict[str, Any], kwargs: dict[str, Any]
) -> None:
    """Give scipy's finite differences a step that survives the parameters' rounding.

    scipy's default steps (about 1.5e-8) are below float32/float16 resolution, so every
    difference would be zero. With low-precision parameters, forward differences use an
    absolute step ``sqrt(eps) * max(1, |x0|)`` and central ones a relative step ``eps**(1/3)``,
    unless the user chose a step.
    """
    if eps < 1e-10 or "eps" in options or "finite_diff_rel_step" in options:
        return
    known = known_options(info.key) or frozenset()
    if jac_kind in ("scipy-default", "2-point") and "eps" in known:
        kwargs["jac"] = None  # scipy's forward differences with an absolute step
        scale = 1.0 if x0 is None else max(1.0, float(np.max(np.abs(x0))))
        options["eps"] = math.sqrt(eps) * scale
    elif jac_kind in ("2-point", "3-point") and info.fd_rel_step:
        options["finite_diff_rel_step"] = eps ** (1 / 3 if jac_kind == "3-point" else 1 / 2)


def solver_counts_gradients(jac_kind: str) -> bool:
    """Whether scipy itself computes (and counts in ``njev``) the gradients for a ``jac`` of this kind.

    True for finite differences (``"2-point"``, ``"3-point"``, scipy's default) and a user's
    callable; the objective counts the gradients it delivers (exact, estimator) itself.

    Example:
        >>> solver_counts_gradients("3-point"), solver_counts_gradients("exact")
        (True, False)
    """
    return jac_kind in ("2-point", "3-point", "scipy-default", "callable")


def estimator_of(args: Mapping[str, Any] | None, info: MethodInfo | None) -> Any:
    """The gradient estimator given as ``jac`` (for the objective's constructor), else ``None``.

    Example:
        >>> from torchzero_bridge.scipy.methods import method_info
        >>> estimator_of({"method": "BFGS", "jac": True}, method_info("BFGS")) is None
        True
    """
    if args is None or info is None:
        return None
    jac = args.get("jac", "auto")
    return jac if resolve_jac(jac, info) == "estimator" else None


def resolve_jac(jac: Any, info: MethodInfo) -> str:
    """Classify a ``jac`` argument for method ``info``.

    Returns:
        ``"exact"`` (autograd), ``"none"`` (method uses no gradient), ``"estimator"``,
        ``"scipy-default"`` (scipy's finite differences), ``"2-point"``/``"3-point"``, or
        ``"callable"``.
    """
    if not info.gradient:
        return "none"
    if jac is True or (isinstance(jac, str) and jac == "auto"):
        return "exact"
    if jac is None or jac is False:
        return "scipy-default"
    if hasattr(jac, "make_scipy_jac"):
        return "estimator"
    if isinstance(jac, str) and jac in _FD_JAC:
        return jac
    if callable(jac):
        return "callable"
    raise ValueError(f"jac: expected True, False, '2-point', '3-point', a callable or an estimator, got {jac!r}")


def _validate_jac(jac: Any, info: MethodInfo) -> None:
    if isinstance(jac, str) and jac == "cs":
        raise ValueError("jac='cs' (complex step) cannot pass through a torch closure; use True or '3-point'")
    if not info.gradient:
        if jac is True or callable(jac) or (isinstance(jac, str) and jac in _FD_JAC):
            warn_user(f"method {info.name} uses no gradient; jac={jac!r} is ignored", IgnoredOptionWarning)
        return
    resolve_jac(jac, info)


def _merge_args(minimizer_args: Mapping[str, Any] | None, **keywords: Any) -> dict[str, Any]:
    if minimizer_args is not None and not isinstance(minimizer_args, Mapping):
        raise TypeError(f"minimizer_args: expected a dict, got {type(minimizer_args).__name__}")
    args = {k: v for k, v in (minimizer_args or {}).items()}
    unknown = sorted(set(args) - set(ARG_KEYS))
    if unknown:
        raise TypeError(f"minimizer_args: unknown key(s) {unknown}; expected some of {list(ARG_KEYS)}")
    for key, value in keywords.items():
        if (isinstance(value, str) and value == "auto") if key == "jac" else value is None:
            continue  # not given as a keyword: minimizer_args or the resolution documented above applies
        if key in args:
            raise ValueError(f"{key} given both in minimizer_args and as a keyword; give it once")
        args[key] = value
    if args.get("options") is not None:
        if not isinstance(args["options"], Mapping):
            raise TypeError(f"options: expected a dict, got {type(args['options']).__name__}")
        args["options"] = copy.copy(dict(args["options"]))
    return args


def _resolve_method(args: dict[str, Any]) -> MethodInfo:
    method = args.get("method")
    if method is None:  # scipy's default choice
        if args.get("constraints"):
            method = "SLSQP"
        elif args.get("bounds") is not None:
            method = "L-BFGS-B"
        else:
            method = "BFGS"
        args["method"] = method
    if callable(method):
        return CUSTOM
    info = method_info(method)
    _warn_ignored(args, info)
    return info


def _warn_ignored(args: dict[str, Any], info: MethodInfo) -> None:
    def warn(what: str) -> None:
        warn_user(f"method {info.name} {what}", IgnoredOptionWarning)

    if info.hess is None:
        for key in ("hess", "hessp"):
            if args.get(key) is not None:
                warn(f"uses no Hessian; {key} is ignored")
                args[key] = None
    if info.hess == "dense" and args.get("hessp") is not None:
        warn("needs a dense Hessian; hessp is ignored (give hess instead)")
        args["hessp"] = None
    if not info.constraints and args.get("constraints"):
        warn("cannot handle constraints; they are ignored (use SLSQP, COBYLA, COBYQA or trust-constr)")
        args["constraints"] = None
    options = args.get("options") or {}
    known = known_options(info.key)
    if known is not None:
        unknown = sorted(k for k in options if k not in known)
        if unknown:
            warn(f"does not use option(s) {unknown}; they are ignored (known: {sorted(known)})")
            args["options"] = {k: v for k, v in options.items() if k in known}
