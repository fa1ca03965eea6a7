"""Line-search Newton-CG (truncated Newton with Armijo backtracking) as a ``minimize`` method.

:func:`newton_cg_armijo` follows the line-search Newton-CG algorithm of Nocedal & Wright,
*Numerical Optimization* (2nd ed.), Algorithm 7.1:

1. Solve ``H p = -g`` approximately by conjugate gradients started at ``p = 0``, stopping when
   the residual falls below ``eta·‖g‖`` (``eta = min(0.5, sqrt(‖g‖))`` by default, a forcing
   sequence that gives superlinear convergence; a fixed ``cg_rtol`` instead), after
   ``cg_maxiter`` iterations, or at the first direction ``d`` with ``dᵀHd ≤ 0``.
2. On such negative (or zero) curvature the CG iterate reached so far is the direction; if it
   happens on the very first CG iteration, the direction is steepest descent, scaled by the
   magnitude of the curvature along it (``-g·‖g‖²/|gᵀHg|``) so that the first trial step has
   a sensible length.
3. Backtrack from the full step ``α = 1`` (``α ← backtrack·α``) until Armijo's sufficient
   decrease ``f(x + αp) ≤ f(x) + c1·α·gᵀp`` holds.

A loose residual test (the default forcing sequence, which scipy's ``"Newton-CG"`` also uses)
stops CG after one iteration while ``‖g‖`` is large, so steps far from the solution are close
to steepest descent; in a curved valley they zigzag. With ``cg_rtol`` small each step is a full
Newton step (when the Hessian is positive definite along the CG directions). On the 2-D
Rosenbrock function from (-1.1, 2.5) with exact derivatives this takes 59 iterations with the
default and 23 with ``cg_rtol=1e-10``; scipy's ``"Newton-CG"`` takes 256.

The function has scipy's custom-method signature, so it can be passed as
``scipy.optimize.minimize(..., method=newton_cg_armijo)`` or as
``MinimizeWrapper(params, method=newton_cg_armijo)``, which supplies the gradient and
Hessian-vector products (autograd, or finite differences of a gradient estimator's gradients
with ``hvp_method="forward"``/``"central"``).

Example:
    >>> import numpy as np
    >>> from scipy.optimize import minimize, rosen, rosen_der, rosen_hess_prod
    >>> from torchzero_bridge.scipy.newton import newton_cg_armijo
    >>> res = minimize(rosen, [-1.1, 2.5], jac=rosen_der, hessp=rosen_hess_prod, method=newton_cg_armijo)
    >>> res.success, np.allclose(res.x, [1.0, 1.0])
    (True, True)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import OptimizeResult

from torchzero_bridge._checks import check_int, check_real
from torchzero_bridge._warn import warn_user
from torchzero_bridge.errors import IgnoredOptionWarning

__all__ = ["newton_cg_armijo"]

_NAME = "newton_cg_armijo"
_MESSAGES = {
    0: "Optimization terminated successfully: the gradient's largest entry is below gtol.",
    1: "Maximum number of iterations has been exceeded.",
    2: "The line search found no sufficient decrease along the direction (precision loss?).",
    3: "The function or its gradient returned a non-finite value.",
    99: "`callback` raised `StopIteration`.",
}


def newton_cg_armijo(
    fun: Callable[..., float],
    x0: ArrayLike,
    args: tuple[Any, ...] = (),
    jac: Callable[..., ArrayLike] | None = None,
    hess: Callable[..., ArrayLike] | None = None,
    hessp: Callable[..., ArrayLike] | None = None,
    bounds: Any = None,
    constraints: Any = (),
    callback: Callable[..., Any] | None = None,
    *,
    gtol: float | None = None,
    tol: float | None = None,
    maxiter: int | None = None,
    cg_maxiter: int | None = None,
    cg_rtol: float | None = None,
    c1: float = 1e-4,
    backtrack: float = 0.5,
    max_backtracks: int = 30,
    disp: bool = False,
    **unknown_options: Any,
) -> OptimizeResult:
    """Minimize ``fun`` by line-search Newton-CG with Armijo backtracking.

    See the module docstring for the algorithm. The signature is scipy's for a callable
    ``minimize`` method: scipy (and ``MinimizeWrapper``) pass ``fun, x0, args, jac, hess,
    hessp, bounds, constraints, callback`` and the ``options`` dict as keywords.

    Args:
        fun: ``fun(x, *args) -> float``.
        x0: the starting point (flattened to a float64 vector).
        args: extra arguments for ``fun``, ``jac``, ``hess`` and ``hessp``.
        jac: the gradient ``jac(x, *args)``; required.
        hess: the Hessian ``hess(x, *args)`` (an array, sparse matrix or LinearOperator); used
            only without ``hessp`` (one call per iteration, products taken from it).
        hessp: the Hessian-vector product ``hessp(x, p, *args)``; preferred over ``hess``.
        bounds: not supported; given anyway, they are ignored with an ``IgnoredOptionWarning``.
        constraints: not supported; ignored with an ``IgnoredOptionWarning``.
        callback: called after each iteration, with ``intermediate_result=OptimizeResult(x,
            fun)`` when it has a parameter of that name, else with a copy of ``x``; raising
            ``StopIteration`` ends the run (status 99).
        gtol: stop when ``max|g| <= gtol``. Default ``tol`` if given, else ``1e-5``.
        tol: ``minimize``'s ``tol``; the default of ``gtol``.
        maxiter: most Newton iterations. Default ``200 * len(x0)`` (scipy's Newton-CG default).
        cg_maxiter: most CG iterations (Hessian-vector products) per Newton iteration.
            Default ``len(x0)``, where CG is exact in exact arithmetic.
        cg_rtol: CG stops when ``‖r‖ <= cg_rtol·‖g‖``. Default ``None``: the forcing sequence
            ``min(0.5, sqrt(‖g‖))``; pass a small value (``1e-10``) for exact Newton steps.
        c1: Armijo's sufficient-decrease constant, in ``(0, 1)``.
        backtrack: the factor that shrinks a rejected step, in ``(0, 1)``.
        max_backtracks: most shrinks per line search before the run stops (status 2).
        disp: print a summary at the end.
        **unknown_options: anything else is ignored with an ``IgnoredOptionWarning``.

    Returns:
        An ``OptimizeResult`` with ``x``, ``fun``, ``jac`` (the gradient at ``x``), ``nit``,
        ``nfev``, ``njev``, ``nhev`` (calls of ``fun``, ``jac`` and ``hessp``/``hess``),
        ``status`` (0 converged, 1 ``maxiter`` reached, 2 line search failed, 3 non-finite
        value or gradient, 99 stopped by the callback), ``success`` and ``message``.

    Raises:
        ValueError: no ``jac``; neither ``hessp`` nor ``hess``; an option out of range (the
            message names it).

    Example:
        >>> import numpy as np
        >>> from scipy.optimize import minimize
        >>> A = np.array([[3.0, 1.0], [1.0, 2.0]])
        >>> b = np.array([1.0, -1.0])
        >>> res = minimize(
        ...     lambda x: 0.5 * x @ A @ x - b @ x,
        ...     np.zeros(2),
        ...     jac=lambda x: A @ x - b,
        ...     hessp=lambda x, p: A @ p,
        ...     method=newton_cg_armijo,
        ...     options={"cg_rtol": 1e-12},
        ... )
        >>> res.nit, np.allclose(res.x, np.linalg.solve(A, b))
        (1, True)
    """
    if jac is None or not callable(jac):
        raise ValueError(f"{_NAME}: jac must be a callable gradient jac(x, *args) (or True with fun returning (f, g))")
    if hessp is None and (hess is None or not callable(hess)):
        raise ValueError(f"{_NAME}: hessp (a callable hessp(x, p, *args)) or a callable hess is required")
    n = int(np.size(x0))
    if gtol is not None:
        gtol = check_real(gtol, "option gtol", _NAME, low_open=False)
    elif tol is not None:
        gtol = check_real(tol, "option tol", _NAME, low_open=False)
    else:
        gtol = 1e-5
    maxiter = 200 * n if maxiter is None else check_int(maxiter, "option maxiter", _NAME, minimum=0)
    cg_maxiter = n if cg_maxiter is None else check_int(cg_maxiter, "option cg_maxiter", _NAME)
    if cg_rtol is not None:
        cg_rtol = check_real(cg_rtol, "option cg_rtol", _NAME, low_open=False)
    c1 = check_real(c1, "option c1", _NAME, high=1.0)
    backtrack = check_real(backtrack, "option backtrack", _NAME, high=1.0)
    max_backtracks = check_int(max_backtracks, "option max_backtracks", _NAME)
    _warn_unused(bounds, constraints, unknown_options)

    counts = {"nfev": 0, "njev": 0, "nhev": 0}

    def f_at(y: np.ndarray) -> float:
        counts["nfev"] += 1
        return float(np.asarray(fun(y, *args), dtype=np.float64).reshape(-1)[0])

    def g_at(y: np.ndarray) -> np.ndarray:
        counts["njev"] += 1
        return np.array(jac(y, *args), dtype=np.float64).reshape(-1)

    x = np.array(x0, dtype=np.float64).reshape(-1)
    product = _product(hessp, hess, args, counts)
    report = _callback_caller(callback)
    fx = f_at(x)
    g = g_at(x)
    nit = 0
    status = 1  # running; at the end: maxiter reached
    if not (math.isfinite(fx) and np.all(np.isfinite(g))):
        status = 3
    while status == 1 and nit < maxiter:
        if np.max(np.abs(g), initial=0.0) <= gtol:
            status = 0
            break
        p = _cg_direction(g, product(x), cg_maxiter, cg_rtol)
        slope = float(g @ p)
        if not slope < 0.0:  # inexact products or rounding: fall back to steepest descent
            p, slope = -g, -float(g @ g)
        step = _armijo(f_at, x, fx, p, slope, c1, backtrack, max_backtracks)
        if step is None:
            status = 2
            break
        x, fx = step
        g = g_at(x)
        nit += 1
        if not np.all(np.isfinite(g)):
            status = 3
        elif report is not None:
            try:
                report(x, fx)
            except StopIteration:
                status = 99
    if status == 1 and np.max(np.abs(g), initial=0.0) <= gtol:
        status = 0  # converged on the last allowed iteration
    result = OptimizeResult(
        x=x,
        fun=fx,
        jac=g,
        nit=nit,
        status=status,
        success=status == 0,
        message=_MESSAGES[status],
        **counts,
    )
    if disp:
        print(f"{_NAME}: {result.message}")
        print(f"         Current function value: {fx:.6g}")
        print(f"         Iterations: {nit}")
        print(f"         Function evaluations: {counts['nfev']}")
        print(f"         Gradient evaluations: {counts['njev']}")
        print(f"         Hessian evaluations: {counts['nhev']}")
    return result


def _product(
    hessp: Callable[..., ArrayLike] | None,
    hess: Callable[..., ArrayLike] | None,
    args: tuple[Any, ...],
    counts: dict[str, int],
) -> Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """``product(x)`` gives ``v -> H(x) v``: from ``hessp``, else from one dense ``hess(x)`` per point."""
    if hessp is not None:
        hvp = hessp

        def at(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            def mv(v: np.ndarray) -> np.ndarray:
                counts["nhev"] += 1
                return np.asarray(hvp(x, v, *args), dtype=np.float64).reshape(-1)

            return mv

        return at
    assert hess is not None
    dense_of = hess

    def at_dense(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        cache: list[Any] = []

        def mv(v: np.ndarray) -> np.ndarray:
            if not cache:  # evaluated on the first product only
                counts["nhev"] += 1
                H: Any = dense_of(x, *args)
                if isinstance(H, (np.ndarray, list, tuple)):
                    H = np.asarray(H, dtype=np.float64).reshape(x.size, x.size)
                cache.append(H)  # else a sparse matrix or LinearOperator: used through ``@``
            return np.asarray(cache[0] @ v, dtype=np.float64).reshape(-1)

        return mv

    return at_dense


def _cg_direction(
    g: np.ndarray, product: Callable[[np.ndarray], np.ndarray], cg_maxiter: int, cg_rtol: float | None
) -> np.ndarray:
    """Truncated CG on ``H p = -g`` from ``p = 0`` (Nocedal & Wright, Algorithm 7.1)."""
    gnorm = float(np.linalg.norm(g))
    eta = min(0.5, math.sqrt(gnorm)) if cg_rtol is None else cg_rtol
    threshold = eta * gnorm
    p = np.zeros_like(g)
    r = g.copy()  # residual H p + g
    d = -r
    rr = float(r @ r)
    for j in range(cg_maxiter):
        hd = product(d)
        curvature = float(d @ hd)
        if not curvature > 0.0:  # negative or zero curvature (or a NaN product)
            if j > 0:
                return p
            if math.isfinite(curvature) and curvature != 0.0:
                return d * (rr / abs(curvature))
            return d
        alpha = rr / curvature
        p = p + alpha * d
        r = r + alpha * hd
        rr_next = float(r @ r)
        if math.sqrt(rr_next) <= threshold:
            break
        d = -r + (rr_next / rr) * d
        rr = rr_next
    return p


def _armijo(
    f_at: Callable[[np.ndarray], float],
    x: np.ndarray,
    fx: float,
    p: np.ndarray,
    slope: float,
    c1: float,
    backtrack: float,
    max_backtracks: int,
) -> tuple[np.ndarray, float] | None:
    """``(x + αp, f(x + αp))`` for the first ``α = backtrack**k`` with sufficient decrease, or ``None``."""
    alpha = 1.0
    for _ in range(max_backtracks + 1):
        trial = x + alpha * p
        ft = f_at(trial)
        # strict decrease too: near a minimum ``c1·α·slope`` can fall below the rounding of f
        if math.isfinite(ft) and ft <= fx + c1 * alpha * slope and ft < fx:
            return trial, ft
        alpha *= backtrack
    return None


def _callback_caller(callback: Callable[..., Any] | None) -> Callable[[np.ndarray, float], None] | None:
    """Call ``callback`` scipy's way: ``intermediate_result=`` when that is its only parameter, else ``x``."""
    if callback is None:
        return None
    try:
        new_style = set(inspect.signature(callback).parameters) == {"intermediate_result"}
    except (TypeError, ValueError):  # builtins without a signature
        new_style = False

    def call(x: np.ndarray, fx: float) -> None:
        if new_style:
            callback(intermediate_result=OptimizeResult(x=x.copy(), fun=fx))
        else:
            callback(x.copy())

    return call


def _warn_unused(bounds: Any, constraints: Any, unknown: dict[str, Any]) -> None:
    ignored = []
    if bounds is not None:
        ignored.append("bounds")
    if constraints is not None and not (isinstance(constraints, (list, tuple, dict)) and len(constraints) == 0):
        ignored.append("constraints")
    if ignored:
        warn_user(f"{_NAME} cannot handle {' or '.join(ignored)}; they are ignored", IgnoredOptionWarning)
    if unknown:
        warn_user(
            f"{_NAME} does not use option(s) {sorted(unknown)}; they are ignored (known: {sorted(_KNOWN)})",
            IgnoredOptionWarning,
        )


_KNOWN = ("gtol", "tol", "maxiter", "cg_maxiter", "cg_rtol", "c1", "backtrack", "max_backtracks", "disp")
