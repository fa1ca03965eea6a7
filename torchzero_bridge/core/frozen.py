"""Frozen parameters: one rule for every optimizer in the package.

A ``torch.nn.Parameter`` with ``requires_grad=False`` is frozen: the user switched it off, so
no optimizer here changes it, whatever the solver family (scipy, nevergrad, optuna, the
gradient estimators, the derivative-free searches). It is left out of the optimizer's param
groups when the group is added, with one :class:`~torchzero_bridge.errors.FrozenParameterWarning`
per group that had some. A plain tensor (not an ``nn.Parameter``) is optimized whatever its
``requires_grad``: derivative-free search over ``torch.zeros(3)`` is a normal use.

Example:
    >>> import warnings
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> model = torch.nn.Linear(2, 1)
    >>> model.bias.requires_grad_(False)  # doctest: +ELLIPSIS
    Parameter containing:...
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     opt = tzb.RandomSearch(model.parameters(), seed=0)
    >>> [tuple(p.shape) for p in opt.param_groups[0]["params"]], caught[0].category.__name__
    ([(1, 2)], 'FrozenParameterWarning')
"""

from __future__ import annotations

from typing import Any

import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.errors import FrozenParameterWarning

__all__ = ["SkipsFrozen", "is_frozen"]


def is_frozen(t: Any) -> bool:
    """Whether ``t`` is an ``nn.Parameter`` the user switched off (``requires_grad=False``).

    Example:
        >>> is_frozen(torch.nn.Parameter(torch.zeros(1), requires_grad=False)), is_frozen(torch.zeros(1))
        (True, False)
    """
    return isinstance(t, torch.nn.Parameter) and not t.requires_grad


def _without_frozen(group: dict[str, Any], owner: str, index: int) -> dict[str, Any]:
    params = group.get("params")
    if params is None:
        return group
    listed: list[Any] = [params] if isinstance(params, torch.Tensor) else list(params)
    kept = [t for t in listed if not is_frozen(t)]
    if len(kept) < len(listed):
        where = ", ".join(f"#{k} {tuple(t.shape)}" for k, t in enumerate(listed) if is_frozen(t))
        warn_user(
            f"{owner}: param group {index} holds {len(listed) - len(kept)} frozen nn.Parameter(s) "
            f"(requires_grad=False; by position in the group: {where}); they are left untouched",
            FrozenParameterWarning,
        )
    return {**group, "params": kept}


class SkipsFrozen(torch.optim.Optimizer):
    """Mixin for ``torch.optim.Optimizer`` subclasses: frozen parameters never enter a group.

    List it before ``torch.optim.Optimizer`` in the bases. Every group goes through
    ``add_param_group`` (the constructor's too), so the rule holds for groups added later.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group`` without the group's frozen ``nn.Parameter`` s."""
        if isinstance(param_group, dict):
            index = len(getattr(self, "param_groups", ()))
            param_group = _without_frozen(param_group, type(self).__name__, index)
        super().add_param_group(param_group)
