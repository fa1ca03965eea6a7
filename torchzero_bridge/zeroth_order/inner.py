"""Inner optimizers: how ``opt=`` and :class:`GradChain` stages are given.

An *optimizer spec* is one of:

* an optimizer already constructed over the owner's parameters:
  ``opt=torch.optim.AdamW(model.parameters(), lr=1e-3)`` (any ``torch.optim.Optimizer``
  subclass, third-party ones included). It must hold exactly the owner's tensors (the same
  tensor objects, grouped any way); it keeps its own param groups and state;
* a callable taking param groups: ``lambda p: torch.optim.Adam(p, lr=1e-2)``,
  ``functools.partial(torch.optim.SGD, lr=0.1)`` or a class such as ``torch.optim.Adam``;
* a ``(class, kwargs)`` pair: ``(torch.optim.Adam, {"lr": 1e-2})``;
* a gradient estimator constructed without parameters: ``SPSA(h=1e-3)`` (it is bound to the
  parameters in place; only as the first stage of a :class:`GradChain`).

A factory or pair receives a list of param-group dicts (``{"params": [...], **group options}``)
that hold exactly the owner's tensors; it must return an optimizer over those tensors. A
constructed optimizer cannot receive the owner's group options: any the owner would forward
raise :class:`~torchzero_bridge.errors.IgnoredOptionWarning`.

An inner optimizer is stepped without a closure after the gradient is in ``.grad``, so one
whose ``step`` needs a closure (``torch.optim.LBFGS``, gradient estimators, the
derivative-free optimizers) is refused when the owner is built.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.inner import build_optimizer
    >>> w = torch.zeros(2, requires_grad=True)
    >>> opt = build_optimizer((torch.optim.SGD, {"lr": 0.1}), [{"params": [w]}], owner="demo", what="opt")
    >>> type(opt).__name__, opt.param_groups[0]["lr"]
    ('SGD', 0.1)
    >>> adam = torch.optim.Adam([w], lr=0.01)
    >>> build_optimizer(adam, [{"params": [w]}], owner="demo", what="opt") is adam
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import torch

from torchzero_bridge.core.frozen import is_frozen
from torchzero_bridge.zeroth_order.dfo_base import warn_ignored

__all__ = ["OptimizerSpec", "build_optimizer", "check_spec", "forward_groups", "is_constructed", "needs_closure"]

OptimizerSpec = Union[
    Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
    tuple[Callable[..., torch.optim.Optimizer], Mapping[str, Any]],
    torch.optim.Optimizer,
]
"""A constructed optimizer, a factory ``f(param_groups) -> Optimizer``, a ``(class, kwargs)`` pair,
or an unbound estimator."""

_EXAMPLE = "e.g. `lambda p: torch.optim.Adam(p, lr=1e-2)` or `(torch.optim.Adam, {'lr': 1e-2})`"
_NOT_OPTIONS = ("params", "param_names")


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


def is_constructed(spec: Any) -> bool:
    """Whether ``spec`` is an optimizer that already holds parameters (not a factory or unbound estimator).

    Example:
        >>> import torch
        >>> is_constructed(torch.optim.SGD([torch.zeros(1, requires_grad=True)])), is_constructed(torch.optim.SGD)
        (True, False)
    """
    return isinstance(spec, torch.optim.Optimizer) and bool(spec.param_groups)


def needs_closure(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt.step`` must be given a closure (it evaluates the loss itself).

    True for optimizers declaring ``needs_closure = True`` (this package's estimators and
    derivative-free optimizers) and for any whose ``step`` has a ``closure`` argument without
    a default (``torch.optim.LBFGS``).

    Example:
        >>> import torch
        >>> w = torch.zeros(1, requires_grad=True)
        >>> needs_closure(torch.optim.LBFGS([w])), needs_closure(torch.optim.SGD([w]))
        (True, False)
    """
    flag = getattr(opt, "needs_closure", None)
    if flag is not None:
        return bool(flag)
    try:
        parameters = inspect.signature(opt.step).parameters
    except (TypeError, ValueError):  # a builtin or odd callable: assume the torch convention
        return False
    closure = parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


def check_spec(
    spec: Any, *, owner: str, what: str, allow_estimator: bool = False, allow_constructed: bool = True
) -> None:
    """Raise a ``TypeError`` now for a spec :func:`build_optimizer` would reject later.

    Args:
        spec: the optimizer spec (``None`` is accepted).
        owner: class name used in error messages.
        what: the argument's name in error messages.
        allow_estimator: accept a gradient estimator (a GradChain's first stage).
        allow_constructed: accept an optimizer constructed over parameters (False where the
            owner needs several independent optimizers, e.g. the members of a swarm).

    Example:
        >>> import torch
        >>> check_spec((torch.optim.Adam, {"lr": 1e-2}), owner="SPSA", what="opt")
        >>> check_spec("adam", owner="SPSA", what="opt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: SPSA: opt expected an optimizer (constructed over the same parameters) or a factory, ...
    """
    if spec is None:
        return
    if isinstance(spec, torch.optim.Optimizer):
        if callable(getattr(spec, "bind", None)) and not allow_estimator:
            raise TypeError(
                f"{owner}: {what} must apply updates ({_EXAMPLE}), not a gradient estimator "
                f"({type(spec).__name__}); chain estimators with GradChain"
            )
        if is_constructed(spec) and not allow_constructed:
            raise TypeError(
                f"{owner}: {what} is an already-constructed {type(spec).__name__}; every member needs an optimizer "
                f"of its own, so pass a factory, {_EXAMPLE}"
            )
        return
    if isinstance(spec, tuple):
        if len(spec) != 2 or not callable(spec[0]) or not isinstance(spec[1], Mapping):
            raise TypeError(f"{owner}: {what} as a tuple must be a (class, kwargs dict) pair, {_EXAMPLE}")
        return
    if not callable(spec):
        raise TypeError(
            f"{owner}: {what} expected an optimizer (constructed over the same parameters) or a factory, "
            f"{_EXAMPLE}; got {type(spec).__name__}"
        )


def build_optimizer(
    spec: OptimizerSpec,
    param_groups: list[dict[str, Any]],
    *,
    owner: str,
    what: str,
    closure_ok: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer ``spec`` describes, over ``param_groups``.

    A constructed optimizer is checked and returned as it is; a factory or pair is called.

    Args:
        spec: see the module docstring.
        param_groups: group dicts holding the tensors the optimizer must own.
        owner: class name used in error messages.
        what: the argument's name in error messages (``"opt"``, ``"optimizers[1]"``).
        closure_ok: the owner passes a closure to ``step`` (else an optimizer that needs one is refused).

    Raises:
        TypeError: ``spec`` is not an optimizer, factory, pair or unbound estimator; the factory
            did not return a ``torch.optim.Optimizer``; the optimizer needs a closure and
            ``closure_ok`` is False.
        ValueError: the optimizer does not hold exactly the given tensors (the message names them).

    Example:
        >>> import torch
        >>> w = torch.zeros(1, requires_grad=True)
        >>> type(build_optimizer(lambda p: torch.optim.Adam(p), [{"params": [w]}], owner="x", what="opt")).__name__
        'Adam'
    """
    check_spec(spec, owner=owner, what=what, allow_estimator=True)
    constructed = is_constructed(spec)
    if constructed:
        opt = spec
    elif isinstance(spec, torch.optim.Optimizer):
        opt = spec.bind(param_groups)  # type: ignore[attr-defined]
    elif isinstance(spec, tuple):
        opt = spec[0](param_groups, **spec[1])
    else:
        opt = spec(param_groups)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"{owner}: {what} must build a torch.optim.Optimizer, got {type(opt).__name__}")
    differ = _difference(param_groups, opt.param_groups, type(opt).__name__, owner)
    if differ:
        how = (
            f"({type(opt).__name__}) was constructed over other tensors than {owner}'s parameters"
            if constructed
            else f"built {type(opt).__name__} over other tensors than the ones it was given"
        )
        fix = (
            "construct it over the same parameters (e.g. both from model.parameters())"
            if constructed
            else "the factory must pass its argument on as the optimizer's params"
        )
        raise ValueError(f"{owner}: {what} {how} ({differ}); {fix}")
    if not closure_ok and needs_closure(opt):
        raise TypeError(
            f"{owner}: {what} ({type(opt).__name__}) needs a closure in step(), but {owner} steps it without one "
            "once the gradient is in .grad; use an optimizer that steps on .grad (SGD, Adam, ...), or for "
            "quasi-Newton steps on estimated gradients MinimizeWrapper(params, method='L-BFGS-B', jac=FDM())"
        )
    if constructed:
        unused = sorted({k for g in param_groups for k in g} - set(_NOT_OPTIONS))
        if unused:
            warn_ignored(
                f"param-group option(s) {unused}",
                f"{owner}'s {what} ({type(opt).__name__}) was constructed with its own param groups; set them there",
            )
    else:  # torch optimizers keep any group key; one their defaults do not name is never read
        unread = sorted({k for g in param_groups for k in g} - set(opt.defaults) - set(_NOT_OPTIONS) - {"bounds"})
        if unread:
            warn_ignored(
                f"{owner}: param-group option(s) {unread}",
                f"neither {owner} nor its {what} ({type(opt).__name__}) has such an option",
            )
    return opt


def _difference(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], cls: str, owner: str) -> str:
    """Name the tensors in one list of groups and not in the other (``""`` when they hold the same)."""
    mine = {id(p) for g in ours for p in g["params"]}
    # frozen nn.Parameters are left out of the owner's groups (core/frozen.py); the user's optimizer may list them
    other = {id(p) for g in theirs for p in g["params"] if not is_frozen(p)}
    if mine == other:
        return ""
    missing = [
        _label(g, k, i, p, owner) for k, g in enumerate(ours) for i, p in enumerate(g["params"]) if id(p) not in other
    ]
    extra = [
        _label(g, k, i, p, cls)
        for k, g in enumerate(theirs)
        for i, p in enumerate(g["params"])
        if id(p) not in mine and not is_frozen(p)
    ]
    parts = []
    if missing:
        parts.append(f"missing from {cls}: {_listing(missing)}")
    if extra:
        parts.append(f"not {owner}'s: {_listing(extra)}")
    return "; ".join(parts)


def _label(group: Mapping[str, Any], k: int, i: int, p: torch.Tensor, whose: str) -> str:
    """``Owner.param_groups[k][i] 'name' (shape (...))``, with the name when the group carries ``param_names``."""
    names = group.get("param_names")
    name = f" '{names[i]}'" if isinstance(names, (list, tuple)) and i < len(names) else ""
    return f"{whose}.param_groups[{k}][{i}]{name} (shape {tuple(p.shape)})"


def _listing(labels: list[str], limit: int = 4) -> str:
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more
