"""Error and warning classes raised by torchzero_bridge.

Every error is also a standard Python exception (``ValueError``, ``TypeError``,
``RuntimeError``) so callers that do not know this module can still catch it.

Example:
    >>> import warnings
    >>> from torchzero_bridge.errors import IgnoredOptionWarning
    >>> warnings.simplefilter("error", IgnoredOptionWarning)
"""

from __future__ import annotations

__all__ = [
    "BridgeWarning",
    "ClosureError",
    "ConvergedWarning",
    "FrozenParameterWarning",
    "IgnoredOptionWarning",
    "MissingGradientError",
    "NonFiniteLossWarning",
    "RunningStatsWarning",
]


class BridgeWarning(UserWarning):
    """Base class of every warning this library emits."""


class IgnoredOptionWarning(BridgeWarning):
    """An option was given that the chosen solver or method does not use."""


class ConvergedWarning(BridgeWarning):
    """An iterative optimizer has converged: later steps evaluate nothing (stop on ``opt.converged``)."""


class FrozenParameterWarning(BridgeWarning):
    """Frozen ``nn.Parameter`` s (``requires_grad=False``) were left out of an optimizer."""


class NonFiniteLossWarning(BridgeWarning, RuntimeWarning):
    """The closure returned NaN or infinity; the point was never kept as an answer."""


class RunningStatsWarning(BridgeWarning):
    """Modules in training mode update running statistics (BatchNorm) at every trial evaluation; no step undoes it."""


class MissingGradientError(RuntimeError):
    """A gradient was needed but the closure produced none (no ``backward()`` call)."""


class ClosureError(ValueError):
    """The closure returned something that is not a scalar loss."""
