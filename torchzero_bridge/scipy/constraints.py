"""Constraints written as torch expressions of the parameters, with exact autograd Jacobians.

A torch constraint is a zero-argument function returning a tensor (or float) computed from the
model's parameters; it is given as a scipy-style dict ``{"type": "ineq"|"eq", "fun": f}`` or
as a ``scipy.optimize.NonlinearConstraint(f, lb, ub)``. Constraints whose ``fun`` takes the
flat vector ``x`` are scipy's own and pass through unchanged.

Example:
    >>> import torch
    >>> from torchzero_bridge.scipy.constraints import is_torch_function
    >>> w = torch.ones(2, requires_grad=True)
    >>> is_torch_function(lambda: 1.0 - (w ** 2).sum()), is_torch_function(lambda x: x[0])
    (True, False)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import LinearConstraint, NonlinearConstraint
from scipy.sparse.linalg import LinearOperator

from torchzero_bridge.core.flat import FlatParams

__all__ = ["TorchConstraintFunction", "convert_constraints", "is_torch_function"]


def is_torch_function(fun: Any) -> bool:
    """True when ``fun`` is callable with no arguments (a torch constraint)."""
    if not callable(fun):
        return False
    try:
        sig = inspect.signature(fun)
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sig.parameters.values())


class TorchConstraintFunction:
    """A torch constraint seen by scipy as ``fun(x)`` and ``jac(x)`` on the flat vector.

    Values and Jacobians are memoized on the last ``x``; the Jacobian comes from autograd
    (one backward per constraint component, batched when possible).

    Args:
        fun: zero-argument function of the parameters returning a tensor or number.
        flat: the parameter layout.
        name: label used in error messages.
    """

    def __init__(self, fun: Callable[[], Any], flat: FlatParams, name: str) -> None:
        self.fun = fun
        self.flat = flat
        self.name = name
        self._x: np.ndarray | None = None
        self._c: np.ndarray | None = None
        self._J: np.ndarray | None = None
        self.ncalls = 0

    def _hit(self, x: np.ndarray) -> bool:
        return self._x is not None and np.array_equal(x, self._x)

    def value(self, x: np.ndarray, *args: Any) -> np.ndarray:
        """Constraint values at ``x``."""
        x = np.asarray(x, dtype=np.float64)
        if not self._hit(x) or self._c is None:
            self.flat.write(x, silent=True)  # a trial point of the solve
            with torch.no_grad():
                c = self._call()
            self._x, self._c, self._J = x.copy(), _to_numpy(c), None
        return self._c.copy()

    def jac(self, x: np.ndarray, *args: Any) -> np.ndarray:
        """Jacobian of the constraint values at ``x`` (rows = components)."""
        x = np.asarray(x, dtype=np.float64)
        if not self._hit(x) or self._J is None:
            self.flat.write(x, silent=True)  # a trial point of the solve
            with torch.enable_grad():
                c = self._call()
                self._x, self._c = x.copy(), _to_numpy(c)
                self._J = self._jacobian(c)
        return self._J.copy()

    def hess(self, x: np.ndarray, v: np.ndarray) -> LinearOperator:
        """``sum_i v_i * Hessian(c_i)(x)`` as a linear operator (exact, by double backward).

        Each product re-runs the constraint function at ``x``, so the operator stays correct
        whatever the parameters hold in between.
        """
        x = np.array(x, dtype=np.float64)
        v = np.array(v, dtype=np.float64).reshape(-1)
        n = self.flat.n
        idx = [i for i, p in enumerate(self.flat.params) if p.requires_grad]
        params = [self.flat.params[i] for i in idx]

        def matvec(p: np.ndarray) -> np.ndarray:
            self.flat.write(x, silent=True)  # a trial point of the solve
            with torch.enable_grad():
                c = self._call()
                if not isinstance(c, torch.Tensor) or not c.requires_grad:
                    return np.zeros(n)
                cv = c.reshape(-1)
                s = (cv * torch.as_tensor(v, dtype=cv.dtype, device=cv.device)).sum()
                gs = torch.autograd.grad(s, params, create_graph=True, allow_unused=True)
                pieces = self.flat.unflatten(np.asarray(p, dtype=np.float64).reshape(-1))
                outs = [(g, pieces[i]) for g, i in zip(gs, idx) if g is not None and g.requires_grad]
                if not outs:
                    return np.zeros(n)
                res = torch.autograd.grad(
                    [o for o, _ in outs], params, grad_outputs=[q for _, q in outs], allow_unused=True
                )
            return self._flatten(idx, res)

        return LinearOperator((n, n), matvec=matvec, dtype=np.float64)

    def _call(self) -> Any:
        self.ncalls += 1
        c = self.fun()
        if c is None:
            raise ValueError(f"{self.name}: the constraint function returned None; expected a tensor or number")
        return c

    def _jacobian(self, c: Any) -> np.ndarray:
        n = self.flat.n
        if not isinstance(c, torch.Tensor) or not c.requires_grad:
            return np.zeros((int(np.size(_to_numpy(c))), n))
        cv = c.reshape(-1)
        m = cv.numel()
        params = [p for p in self.flat.params if p.requires_grad]
        idx = [i for i, p in enumerate(self.flat.params) if p.requires_grad]
        try:
            rows = torch.autograd.grad(
                cv,
                params,
                grad_outputs=torch.eye(m, dtype=cv.dtype, device=cv.device),
                allow_unused=True,
                is_grads_batched=True,
            )
            return np.stack([self._flatten(idx, [None if r is None else r[k] for r in rows]) for k in range(m)])
        except RuntimeError:
            out = np.empty((m, n))
            for k in range(m):
                r = torch.autograd.grad(cv[k], params, retain_graph=True, allow_unused=True)
                out[k] = self._flatten(idx, r)
            return out

    def _flatten(self, idx: list[int], res: Sequence[torch.Tensor | None]) -> np.ndarray:
        full: list[torch.Tensor | None] = [None] * len(self.flat.params)
        for i, r in zip(idx, res):
            full[i] = r
        return self.flat.flatten(full)


def _to_numpy(c: Any) -> np.ndarray:
    if isinstance(c, torch.Tensor):
        return c.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy().copy()
    return np.atleast_1d(np.asarray(c, dtype=np.float64)).reshape(-1)


def convert_constraints(
    constraints: Any, flat: FlatParams, *, objects: bool = False
) -> tuple[list[Any], list[TorchConstraintFunction]]:
    """Turn torch constraints into scipy constraints on the flat vector.

    Args:
        constraints: a dict, a ``NonlinearConstraint``/``LinearConstraint``, or a sequence of
            them. Torch ones (zero-argument ``fun``) are converted; others pass through.
        flat: the parameter layout.
        objects: give torch constraints as ``NonlinearConstraint`` objects with exact
            constraint Hessians (for trust-constr, which otherwise approximates them by BFGS).

    Returns:
        ``(scipy_constraints, torch_functions)``; the second list lets callers count calls.

    Raises:
        TypeError: an entry that is not a dict or scipy constraint object.
        ValueError: a dict without ``type``/``fun`` or with an unknown ``type``.
    """
    if constraints is None:
        return [], []
    if isinstance(constraints, (dict, NonlinearConstraint, LinearConstraint)):
        constraints = [constraints]
    out: list[Any] = []
    fns: list[TorchConstraintFunction] = []
    for k, con in enumerate(constraints):
        name = f"constraints[{k}]"
        if isinstance(con, dict):
            if "fun" not in con or "type" not in con:
                raise ValueError(f"{name}: a constraint dict needs 'type' ('eq' or 'ineq') and 'fun'")
            if con["type"] not in ("eq", "ineq"):
                raise ValueError(f"{name}['type']: expected 'eq' or 'ineq', got {con['type']!r}")
            if is_torch_function(con["fun"]):
                fn = TorchConstraintFunction(con["fun"], flat, name)
                fns.append(fn)
                if objects:
                    ub = 0.0 if con["type"] == "eq" else np.inf
                    out.append(NonlinearConstraint(fn.value, 0.0, ub, jac=fn.jac, hess=fn.hess))
                else:
                    out.append({"type": con["type"], "fun": fn.value, "jac": fn.jac})
            else:
                out.append(con)
        elif isinstance(con, NonlinearConstraint):
            if is_torch_function(con.fun):
                fn = TorchConstraintFunction(con.fun, flat, name)
                fns.append(fn)
                hess = fn.hess if objects else con.hess
                out.append(
                    NonlinearConstraint(
                        fn.value, con.lb, con.ub, jac=fn.jac, hess=hess, keep_feasible=con.keep_feasible
                    )
                )
            else:
                out.append(con)
        elif isinstance(con, LinearConstraint):
            out.append(con)
        else:
            raise TypeError(
                f"{name}: expected a dict, NonlinearConstraint or LinearConstraint, got {type(con).__name__}"
            )
    return out, fns
