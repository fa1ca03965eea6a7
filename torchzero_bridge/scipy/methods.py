"""What each ``scipy.optimize.minimize`` method uses: derivatives, bounds, constraints, options.

The wrappers read this table to decide which callables to hand scipy and to warn about
options a method would ignore.

Example:
    >>> from torchzero_bridge.scipy.methods import method_info
    >>> info = method_info("l-bfgs-b")
    >>> info.name, info.gradient, info.bounds
    ('L-BFGS-B', True, True)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache

__all__ = ["METHODS", "MethodInfo", "known_options", "method_info"]


@dataclass(frozen=True)
class MethodInfo:
    """Capabilities of one minimize method.

    Attributes:
        name: scipy's spelling (as in its documentation).
        gradient: uses a gradient (``jac``).
        hess: ``"dense"`` (needs ``hess``), ``"hessp"`` (takes ``hessp``) or ``None``.
        bounds: accepts ``bounds``.
        constraints: accepts ``constraints``.
        fd_rel_step: accepts the ``finite_diff_rel_step`` option.
    """

    name: str
    gradient: bool
    hess: str | None
    bounds: bool
    constraints: bool
    fd_rel_step: bool

    @property
    def key(self) -> str:
        """Lower-case name scipy uses internally."""
        return self.name.lower()


METHODS: dict[str, MethodInfo] = {
    m.key: m
    for m in (
        MethodInfo("Nelder-Mead", False, None, True, False, False),
        MethodInfo("Powell", False, None, True, False, False),
        MethodInfo("CG", True, None, False, False, True),
        MethodInfo("BFGS", True, None, False, False, True),
        MethodInfo("Newton-CG", True, "hessp", False, False, False),
        MethodInfo("L-BFGS-B", True, None, True, False, True),
        MethodInfo("TNC", True, None, True, False, True),
        MethodInfo("COBYLA", False, None, True, True, False),
        MethodInfo("COBYQA", False, None, True, True, False),
        MethodInfo("SLSQP", True, None, True, True, True),
        MethodInfo("trust-constr", True, "hessp", True, True, True),
        MethodInfo("dogleg", True, "dense", False, False, False),
        MethodInfo("trust-ncg", True, "hessp", False, False, False),
        MethodInfo("trust-exact", True, "dense", False, False, False),
        MethodInfo("trust-krylov", True, "hessp", False, False, False),
    )
}

CUSTOM = MethodInfo("custom", True, "hessp", True, True, False)

_FUNCS = {
    "nelder-mead": "_minimize_neldermead",
    "powell": "_minimize_powell",
    "cg": "_minimize_cg",
    "bfgs": "_minimize_bfgs",
    "newton-cg": "_minimize_newtoncg",
    "l-bfgs-b": "_minimize_lbfgsb",
    "tnc": "_minimize_tnc",
    "cobyla": "_minimize_cobyla",
    "cobyqa": "_minimize_cobyqa",
    "slsqp": "_minimize_slsqp",
    "trust-constr": "_minimize_trustregion_constr",
}
_TRUST = ("dogleg", "trust-ncg", "trust-exact", "trust-krylov")
_NOT_OPTIONS = {
    "fun",
    "func",
    "x0",
    "args",
    "jac",
    "grad",
    "hess",
    "hessp",
    "callback",
    "bounds",
    "constraints",
    "unknown_options",
    "trust_region_options",
    "subproblem",
}


def method_info(method: str) -> MethodInfo:
    """Look a method up by name, case-insensitively.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    if not isinstance(method, str):
        raise TypeError(f"method: expected a string or a callable, got {type(method).__name__}")
    info = METHODS.get(method.lower())
    if info is None:
        valid = ", ".join(m.name for m in METHODS.values())
        raise ValueError(f"method: unknown method {method!r}; expected one of {valid}, or a callable")
    return info


@cache
def known_options(key: str) -> frozenset[str] | None:
    """Option names scipy's implementation of method ``key`` reads (``None`` = unknown)."""
    try:
        if key in _TRUST:
            from scipy.optimize import _trustregion

            names = set(inspect.signature(_trustregion._minimize_trust_region).parameters)
            names.discard("subproblem_maxiter")
            if key != "trust-krylov":
                names.discard("inexact")
        else:
            from scipy.optimize import _minimize

            names = set(inspect.signature(getattr(_minimize, _FUNCS[key])).parameters)
    except (ImportError, AttributeError, KeyError, ValueError, TypeError):
        return None
    return frozenset(names - _NOT_OPTIONS)
