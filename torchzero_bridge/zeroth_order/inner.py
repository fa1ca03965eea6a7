"""Unconstructed optimizers: how ``opt=`` and :class:`GradChain` stages are given.

An *optimizer spec* builds a ``torch.optim.Optimizer`` once the parameters are known:

* a callable taking param groups: ``lambda p: torch.optim.Adam(p, lr=1e-2)``,
  ``functools.partial(torch.optim.SGD, lr=0.1)`` or a class such as ``torch.optim.Adam``;
* a ``(class, kwargs)`` pair: ``(torch.optim.Adam, {"lr": 1e-2})``;
* a gradient estimator constructed without parameters: ``SPSA(h=1e-3)`` (it is bound to the
  parameters in place; only as the first stage of a :class:`GradChain`).

The builder receives a list of param-group dicts (``{"params": [...], **group options}``) that
hold exactly the owner's tensors; it must return an optimizer over those tensors.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.inner import build_optimizer
    >>> w = torch.zeros(2, requires_grad=True)
    >>> opt = build_optimizer((torch.optim.SGD, {"lr": 0.1}), [{"params": [w]}], owner="demo", what="opt")
    >>> type(opt).__name__, opt.param_groups[0]["lr"]
    ('SGD', 0.1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import torch

__all__ = ["OptimizerSpec", "build_optimizer", "check_spec", "forward_groups"]

OptimizerSpec = Union[
    Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
    tuple[Callable[..., torch.optim.Optimizer], Mapping[str, Any]],
    torch.optim.Optimizer,
]
"""A factory ``f(param_groups) -> Optimizer``, a ``(class, kwargs)`` pair, or an unbound estimator."""

_EXAMPLE = "e.g. `lambda p: torch.optim.Adam(p, lr=1e-2)` or `(torch.optim.Adam, {'lr': 1e-2})`"


def forward_groups(param_groups: Iterable[Mapping[str, Any]], own_keys: Iterable[str]) -> list[dict[str, Any]]:
    """Copies of ``param_groups`` without the keys the owner consumes itself.

    Args:
        param_groups: the owner's param groups.
        own_keys: option names that belong to the owner (``"h"``, ``"lr"``...).

    Example:
        >>> forward_groups([{"params": [], "h": 1e-3, "lr": 0.1}], ["h"])
        [{'params': [], 'lr': 0.1}]
    """
    own = set(own_keys)
    return [{k: (list(v) if k == "params" else v) for k, v in g.items() if k not in own} for g in param_groups]


def check_spec(spec: Any, *, owner: str, what: str, allow_estimator: bool = False) -> None:
    """Raise a ``TypeError`` now for a spec :func:`build_optimizer` would reject later.

    Args:
        spec: the optimizer spec (``None`` is accepted).
        owner: class name used in error messages.
        what: the argument's name in error messages.
        allow_estimator: accept an unbound gradient estimator (a GradChain's first stage).

    Example:
        >>> import torch
        >>> check_spec((torch.optim.Adam, {"lr": 1e-2}), owner="SPSA", what="opt")
        >>> check_spec("adam", owner="SPSA", what="opt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: SPSA: opt expected an optimizer factory, ...
    """
    if spec is None:
        return
    if isinstance(spec, torch.optim.Optimizer):
        unbound = callable(getattr(spec, "bind", None)) and not spec.param_groups
        if unbound and not allow_estimator:
            raise TypeError(
                f"{owner}: {what} must apply updates ({_EXAMPLE}), not a gradient estimator "
                f"({type(spec).__name__}); chain estimators with GradChain"
            )
        if not unbound:
            raise TypeError(
                f"{owner}: {what} is an already-constructed {type(spec).__name__}; pass it unconstructed, "
                f"{_EXAMPLE}, so it can be built over the same parameters"
            )
        return
    if isinstance(spec, tuple):
        if len(spec) != 2 or not callable(spec[0]) or not isinstance(spec[1], Mapping):
            raise TypeError(f"{owner}: {what} as a tuple must be a (class, kwargs dict) pair, {_EXAMPLE}")
        return
    if not callable(spec):
        raise TypeError(f"{owner}: {what} expected an optimizer factory, {_EXAMPLE}; got {type(spec).__name__}")


def build_optimizer(
    spec: OptimizerSpec, param_groups: list[dict[str, Any]], *, owner: str, what: str
) -> torch.optim.Optimizer:
    """Construct the optimizer ``spec`` describes over ``param_groups``.

    Args:
        spec: see the module docstring.
        param_groups: group dicts holding the tensors the optimizer must own.
        owner: class name used in error messages.
        what: the argument's name in error messages (``"opt"``, ``"optimizers[1]"``).

    Raises:
        TypeError: ``spec`` is not a factory, a pair or an unbound estimator, or the factory
            did not return a ``torch.optim.Optimizer``.
        ValueError: the built optimizer does not hold exactly the given tensors.

    Example:
        >>> import torch
        >>> w = torch.zeros(1, requires_grad=True)
        >>> type(build_optimizer(lambda p: torch.optim.Adam(p), [{"params": [w]}], owner="x", what="opt")).__name__
        'Adam'
    """
    check_spec(spec, owner=owner, what=what, allow_estimator=True)
    if isinstance(spec, torch.optim.Optimizer):
        opt = spec.bind(param_groups)  # type: ignore[attr-defined]
    elif isinstance(spec, tuple):
        opt = spec[0](param_groups, **spec[1])
    else:
        opt = spec(param_groups)  # type: ignore[operator]
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"{owner}: {what} must build a torch.optim.Optimizer, got {type(opt).__name__}")
    expected = {id(p) for g in param_groups for p in g["params"]}
    got = {id(p) for g in opt.param_groups for p in g["params"]}
    if got != expected:
        raise ValueError(
            f"{owner}: {what} built {type(opt).__name__} over other tensors than the ones it was given; "
            "the factory must pass its argument on as the optimizer's params"
        )
    return opt
