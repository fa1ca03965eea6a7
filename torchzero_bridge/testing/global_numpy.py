"""The standard global-optimization test functions in numpy, with their analytic gradients.

Written from the same formulas as the torch modules of
:mod:`torchzero_bridge.testing.global_functions` (which re-exports every name here), so scipy
can be run directly on them as an independent reference. Each accepts ``x`` of shape ``(n,)``
or ``(n, S)`` (``S`` points at once, as scipy's vectorized solvers pass them).

Example:
    >>> import numpy as np
    >>> from torchzero_bridge.testing.global_numpy import rastrigin, rastrigin_grad
    >>> float(rastrigin(np.zeros(3))), rastrigin_grad(np.zeros(2)).tolist()
    (0.0, [0.0, 0.0])
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
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


def rastrigin(x: np.ndarray) -> np.ndarray:
    """Rastrigin's function at ``x`` (shape ``(n,)`` or ``(n, S)``)."""
    x = np.asarray(x, dtype=np.float64)
    return 10.0 * x.shape[0] + np.sum(x**2 - 10.0 * np.cos(_TWO_PI * x), axis=0)


def rastrigin_grad(x: np.ndarray) -> np.ndarray:
    """Analytic gradient of :func:`rastrigin`."""
    x = np.asarray(x, dtype=np.float64)
    return 2.0 * x + 10.0 * _TWO_PI * np.sin(_TWO_PI * x)


def ackley(x: np.ndarray) -> np.ndarray:
    """Ackley's function at ``x`` (shape ``(n,)`` or ``(n, S)``)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    r = np.sqrt(np.sum(x**2, axis=0) / n)
    return -20.0 * np.exp(-0.2 * r) - np.exp(np.sum(np.cos(_TWO_PI * x), axis=0) / n) + 20.0 + math.e


def ackley_grad(x: np.ndarray) -> np.ndarray:
    """Analytic gradient of :func:`ackley` (0 for the radial term at the origin)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    r = np.sqrt(np.sum(x**2, axis=0) / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        radial = np.where(r > 0, 4.0 * np.exp(-0.2 * r) / (n * np.where(r > 0, r, 1.0)), 0.0) * x
    periodic = (_TWO_PI / n) * np.sin(_TWO_PI * x) * np.exp(np.sum(np.cos(_TWO_PI * x), axis=0) / n)
    return radial + periodic


def styblinski_tang(x: np.ndarray) -> np.ndarray:
    """Styblinski–Tang function at ``x`` (shape ``(n,)`` or ``(n, S)``)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * np.sum(x**4 - 16.0 * x**2 + 5.0 * x, axis=0)


def styblinski_tang_grad(x: np.ndarray) -> np.ndarray:
    """Analytic gradient of :func:`styblinski_tang`."""
    x = np.asarray(x, dtype=np.float64)
    return 2.0 * x**3 - 16.0 * x + 2.5


def six_hump_camel(x: np.ndarray) -> np.ndarray:
    """Six-hump camel function at ``x`` (shape ``(2,)`` or ``(2, S)``)."""
    a, b = np.asarray(x, dtype=np.float64)
    return (4.0 - 2.1 * a**2 + a**4 / 3.0) * a**2 + a * b + (-4.0 + 4.0 * b**2) * b**2


def six_hump_camel_grad(x: np.ndarray) -> np.ndarray:
    """Analytic gradient of :func:`six_hump_camel`."""
    a, b = np.asarray(x, dtype=np.float64)
    return np.stack([8.0 * a - 8.4 * a**3 + 2.0 * a**5 + b, a - 8.0 * b + 16.0 * b**3])


def eggholder(x: np.ndarray) -> np.ndarray:
    """Eggholder function at ``x`` (shape ``(2,)`` or ``(2, S)``)."""
    a, b = np.asarray(x, dtype=np.float64)
    return -(b + 47.0) * np.sin(np.sqrt(np.abs(a / 2.0 + b + 47.0))) - a * np.sin(np.sqrt(np.abs(a - (b + 47.0))))


def eggholder_grad(x: np.ndarray) -> np.ndarray:
    """Analytic gradient of :func:`eggholder` (away from the kinks of ``|.|``)."""
    a, b = np.asarray(x, dtype=np.float64)
    u = a / 2.0 + b + 47.0
    v = a - (b + 47.0)
    su, sv = np.sqrt(np.abs(u)), np.sqrt(np.abs(v))
    with np.errstate(divide="ignore", invalid="ignore"):
        du = np.where(su > 0, np.cos(su) * np.sign(u) / (2.0 * np.where(su > 0, su, 1.0)), 0.0)
        dv = np.where(sv > 0, np.cos(sv) * np.sign(v) / (2.0 * np.where(sv > 0, sv, 1.0)), 0.0)
    ga = -(b + 47.0) * du * 0.5 - np.sin(sv) - a * dv
    gb = -np.sin(su) - (b + 47.0) * du + a * dv
    return np.stack([ga, gb])


def levy(x: np.ndarray) -> np.ndarray:
    """Levy's function at ``x`` (shape ``(n,)`` or ``(n, S)``)."""
    w = 1.0 + (np.asarray(x, dtype=np.float64) - 1.0) / 4.0
    head = np.sin(math.pi * w[0]) ** 2
    mid = np.sum((w[:-1] - 1.0) ** 2 * (1.0 + 10.0 * np.sin(math.pi * w[:-1] + 1.0) ** 2), axis=0)
    tail = (w[-1] - 1.0) ** 2 * (1.0 + np.sin(_TWO_PI * w[-1]) ** 2)
    return head + mid + tail


def levy_grad(x: np.ndarray) -> np.ndarray:
    """Analytic gradient of :func:`levy`."""
    w = 1.0 + (np.asarray(x, dtype=np.float64) - 1.0) / 4.0
    g = np.zeros_like(w)
    g[0] += math.pi * np.sin(_TWO_PI * w[0])
    m = w[:-1]
    s = np.sin(math.pi * m + 1.0)
    g[:-1] += 2.0 * (m - 1.0) * (1.0 + 10.0 * s**2) + (m - 1.0) ** 2 * 10.0 * math.pi * np.sin(
        2.0 * (math.pi * m + 1.0)
    )
    t = w[-1]
    g[-1] += 2.0 * (t - 1.0) * (1.0 + np.sin(_TWO_PI * t) ** 2) + (t - 1.0) ** 2 * _TWO_PI * np.sin(4.0 * math.pi * t)
    return g / 4.0
