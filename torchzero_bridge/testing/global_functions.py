"""Standard global-optimization test functions as torch modules and as numpy functions.

Each function comes three ways, written with the same formula:

* a torch module (``Rastrigin``, ``Ackley``, ...) whose vector is split over two or more
  parameter tensors (where the dimension allows), for the wrappers;
* a numpy function (``rastrigin(x)``) and its analytic gradient (``rastrigin_grad(x)``), written in
  :mod:`~torchzero_bridge.testing.global_numpy` and re-exported here,
  for running scipy directly as an independent reference. Both accept ``x`` of shape
  ``(n,)`` or ``(n, S)`` (``S`` points at once, as scipy's vectorized solvers pass them);
* an entry of :data:`GLOBAL_FUNCTIONS` with the search box, the known minimum and its
  argmin(s).

Example:
    >>> import numpy as np
    >>> from torchzero_bridge.testing.global_functions import GLOBAL_FUNCTIONS, Rastrigin
    >>> spec = GLOBAL_FUNCTIONS["rastrigin"]
    >>> model = Rastrigin.at([1.0, 2.0, 3.0])
    >>> len(list(model.parameters())), float(model().detach()) == float(spec.fun(np.array([1.0, 2.0, 3.0])))
    (2, True)
    >>> spec.minimum(3), spec.argmins(3).tolist()
    (0.0, [[0.0, 0.0, 0.0]])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from torchzero_bridge.testing.global_numpy import (
    ackley,
    ackley_grad,
    eggholder,
    eggholder_grad,
    levy,
    levy_grad,
    rastrigin,
    rastrigin_grad,
    six_hump_camel,
    six_hump_camel_grad,
    styblinski_tang,
    styblinski_tang_grad,
)

__all__ = [
    "GLOBAL_FUNCTIONS",
    "Ackley",
    "CountedFunction",
    "Eggholder",
    "GlobalFunction",
    "GlobalProblem",
    "Levy",
    "Rastrigin",
    "SixHumpCamel",
    "StyblinskiTang",
    "ackley",
    "ackley_grad",
    "eggholder",
    "eggholder_grad",
    "levy",
    "levy_grad",
    "rastrigin",
    "rastrigin_grad",
    "six_hump_camel",
    "six_hump_camel_grad",
    "styblinski_tang",
    "styblinski_tang_grad",
]

_TWO_PI = 2.0 * math.pi


# ---------------------------------------------------------------------- torch modules
class GlobalProblem(torch.nn.Module):
    """Base class: a test function of one vector held in several parameter tensors.

    Args:
        *parts: initial values, one parameter tensor each (concatenated in order).
        dtype: parameter dtype.

    Subclasses implement :meth:`function` on the concatenated vector.
    """

    def __init__(self, *parts: Sequence[float] | float | torch.Tensor, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if not parts:
            raise ValueError("parts: expected at least one initial value")
        self.parts = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(p, dtype=dtype).clone()) for p in parts]
        )

    @classmethod
    def at(cls, x0: Sequence[float] | np.ndarray, dtype: torch.dtype = torch.float64) -> GlobalProblem:
        """Build the module at ``x0``, split into two tensors (halves) when ``len(x0) >= 2``.

        Example:
            >>> [tuple(p.shape) for p in Rastrigin.at([0.5, 1.0, 2.0]).parameters()]
            [(1,), (2,)]
        """
        x = [float(v) for v in np.asarray(x0, dtype=np.float64).reshape(-1)]
        k = len(x) // 2
        parts = [x[:k], x[k:]] if k else [x]
        return cls(*parts, dtype=dtype)

    def vector(self) -> torch.Tensor:
        """All parts concatenated into one vector."""
        return torch.cat([p.reshape(-1) for p in self.parts])

    def forward(self) -> torch.Tensor:
        return self.function(self.vector())

    @staticmethod
    def function(x: torch.Tensor) -> torch.Tensor:
        """The function value at vector ``x``."""
        raise NotImplementedError


class Rastrigin(GlobalProblem):
    """``10 n + sum(x**2 - 10 cos(2 pi x))``; minimum 0 at ``x = 0``, box ``[-5.12, 5.12]``."""

    @staticmethod
    def function(x: torch.Tensor) -> torch.Tensor:
        return 10.0 * x.shape[0] + torch.sum(x**2 - 10.0 * torch.cos(_TWO_PI * x))


class Ackley(GlobalProblem):
    """Ackley's function; minimum 0 at ``x = 0``, box ``[-32.768, 32.768]``."""

    @staticmethod
    def function(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        r = torch.sqrt(torch.sum(x**2) / n)
        return -20.0 * torch.exp(-0.2 * r) - torch.exp(torch.sum(torch.cos(_TWO_PI * x)) / n) + 20.0 + math.e


class StyblinskiTang(GlobalProblem):
    """``sum(x**4 - 16 x**2 + 5 x) / 2``; minimum ``-39.166... n`` at ``x = -2.9035...``, box ``[-5, 5]``."""

    @staticmethod
    def function(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.sum(x**4 - 16.0 * x**2 + 5.0 * x)


class SixHumpCamel(GlobalProblem):
    """Six-hump camel (2-D); minimum ``-1.0316...`` at ``±(0.0898, -0.7127)``, box ``[-3, 3] x [-2, 2]``."""

    @staticmethod
    def function(x: torch.Tensor) -> torch.Tensor:
        a, b = x[0], x[1]
        return (4.0 - 2.1 * a**2 + a**4 / 3.0) * a**2 + a * b + (-4.0 + 4.0 * b**2) * b**2


class Eggholder(GlobalProblem):
    """Eggholder (2-D); minimum ``-959.6406...`` at ``(512, 404.2319)``, box ``[-512, 512]**2``."""

    @staticmethod
    def function(x: torch.Tensor) -> torch.Tensor:
        a, b = x[0], x[1]
        return -(b + 47.0) * torch.sin(torch.sqrt(torch.abs(a / 2.0 + b + 47.0))) - a * torch.sin(
            torch.sqrt(torch.abs(a - (b + 47.0)))
        )


class Levy(GlobalProblem):
    """Levy's function; minimum 0 at ``x = 1``, box ``[-10, 10]``."""

    @staticmethod
    def function(x: torch.Tensor) -> torch.Tensor:
        w = 1.0 + (x - 1.0) / 4.0
        head = torch.sin(math.pi * w[0]) ** 2
        mid = torch.sum((w[:-1] - 1.0) ** 2 * (1.0 + 10.0 * torch.sin(math.pi * w[:-1] + 1.0) ** 2))
        tail = (w[-1] - 1.0) ** 2 * (1.0 + torch.sin(_TWO_PI * w[-1]) ** 2)
        return head + mid + tail


# ---------------------------------------------------------------------- reference runs
class CountedFunction:
    """A numpy objective that counts its calls, for comparing evaluation counts with a wrapper.

    ``calls`` is what scipy reports as ``nfev``. ``distinct`` counts only calls at a point
    different from the previous call's and ``unique`` the different points ever asked for.
    A wrapper's closure runs lie between the two: its memo always answers a repeat of the
    point just evaluated, and sometimes one of an older remembered point.

    Args:
        fun: the numpy function.

    Example:
        >>> import numpy as np
        >>> f = CountedFunction(rastrigin)
        >>> _ = f(np.zeros(2)), f(np.zeros(2)), f(np.ones(2))
        >>> f.calls, f.distinct, f.unique
        (3, 2, 2)
    """

    def __init__(self, fun: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fun = fun
        self.calls = 0
        self.distinct = 0
        self._last: np.ndarray | None = None
        self._seen: set[bytes] = set()

    def __call__(self, x: np.ndarray) -> float:
        x = np.array(x, dtype=np.float64)
        self.calls += 1
        if self._last is None or not np.array_equal(x, self._last):
            self.distinct += 1
        self._last = x
        self._seen.add(x.tobytes())
        return float(self.fun(x))

    @property
    def unique(self) -> int:
        """How many different points were asked for."""
        return len(self._seen)


# ---------------------------------------------------------------------- registry
@dataclass(frozen=True)
class GlobalFunction:
    """One test function with its reference data.

    Attributes:
        name: registry key.
        module: the torch module class (build it with ``module.at(x0)``).
        fun: numpy function.
        grad: numpy analytic gradient.
        lower: lower bound of the search box, per dimension (a scalar applies to all).
        upper: upper bound of the search box.
        dims: the dimensions the function is defined for (``None`` = any ``n >= 1``).
        fmin: the global minimum as a function of ``n``.
        xmin: the global minimizer(s) as a function of ``n``, shape ``(k, n)``.

    Example:
        >>> spec = GLOBAL_FUNCTIONS["six_hump_camel"]
        >>> spec.bounds(2), round(spec.minimum(2), 4), spec.argmins(2).shape
        ([(-3.0, 3.0), (-2.0, 2.0)], -1.0316, (2, 2))
    """

    name: str
    module: type[GlobalProblem]
    fun: Callable[[np.ndarray], np.ndarray]
    grad: Callable[[np.ndarray], np.ndarray]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    dims: tuple[int, ...] | None
    fmin: Callable[[int], float]
    xmin: Callable[[int], np.ndarray]

    def bounds(self, n: int) -> list[tuple[float, float]]:
        """The search box as ``n`` ``(lo, hi)`` pairs (scipy's flat format)."""
        self._check(n)
        lo = np.broadcast_to(np.asarray(self.lower, dtype=np.float64), (n,))
        hi = np.broadcast_to(np.asarray(self.upper, dtype=np.float64), (n,))
        return [(float(a), float(b)) for a, b in zip(lo, hi)]

    def minimum(self, n: int) -> float:
        """The global minimum value in ``n`` dimensions."""
        self._check(n)
        return float(self.fmin(n))

    def argmins(self, n: int) -> np.ndarray:
        """All global minimizers in ``n`` dimensions, shape ``(k, n)``."""
        self._check(n)
        return np.atleast_2d(np.asarray(self.xmin(n), dtype=np.float64))

    def _check(self, n: int) -> None:
        if self.dims is not None and n not in self.dims:
            raise ValueError(f"{self.name} is defined for n in {self.dims}, got n={n}")


_ST_ARGMIN = -2.903534027771178  # root of 2x^3 - 16x + 2.5 = 0 (the lower one)
_ST_MIN = 0.5 * (_ST_ARGMIN**4 - 16.0 * _ST_ARGMIN**2 + 5.0 * _ST_ARGMIN)
_CAMEL_ARGMIN = np.array([0.08984201310031807, -0.7126564030207396])
_EGG_ARGMIN = np.array([512.0, 404.2318051137578])

GLOBAL_FUNCTIONS: dict[str, GlobalFunction] = {
    f.name: f
    for f in (
        GlobalFunction(
            "rastrigin",
            Rastrigin,
            rastrigin,
            rastrigin_grad,
            (-5.12,),
            (5.12,),
            None,
            lambda n: 0.0,
            lambda n: np.zeros((1, n)),
        ),
        GlobalFunction(
            "ackley",
            Ackley,
            ackley,
            ackley_grad,
            (-32.768,),
            (32.768,),
            None,
            lambda n: 0.0,
            lambda n: np.zeros((1, n)),
        ),
        GlobalFunction(
            "styblinski_tang",
            StyblinskiTang,
            styblinski_tang,
            styblinski_tang_grad,
            (-5.0,),
            (5.0,),
            None,
            lambda n: _ST_MIN * n,
            lambda n: np.full((1, n), _ST_ARGMIN),
        ),
        GlobalFunction(
            "six_hump_camel",
            SixHumpCamel,
            six_hump_camel,
            six_hump_camel_grad,
            (-3.0, -2.0),
            (3.0, 2.0),
            (2,),
            lambda n: float(six_hump_camel(_CAMEL_ARGMIN)),
            lambda n: np.stack([_CAMEL_ARGMIN, -_CAMEL_ARGMIN]),
        ),
        GlobalFunction(
            "eggholder",
            Eggholder,
            eggholder,
            eggholder_grad,
            (-512.0,),
            (512.0,),
            (2,),
            lambda n: float(eggholder(_EGG_ARGMIN)),
            lambda n: _EGG_ARGMIN[None, :],
        ),
        GlobalFunction(
            "levy",
            Levy,
            levy,
            levy_grad,
            (-10.0,),
            (10.0,),
            None,
            lambda n: 0.0,
            lambda n: np.ones((1, n)),
        ),
    )
}
"""Every test function by name."""
