"""Breeding optimizers: crossover of two optimizers' states and mutation of their hyperparameters.

Pure functions on torch ``state_dict()`` layouts, used by
:class:`~torchzero_bridge.zeroth_order.SwarmOfOptimizers` to build a child optimizer from
its two best members. Nothing here changes its inputs: every tensor of a result is a copy.

* :func:`cross_state`: the child's per-parameter state from the parents' (``"swap"``, ``"average"``
  or ``"none"``);
* :func:`mutate_groups`: log-normal noise on named numeric group options (``lr``, ``betas``...);
* :func:`reset_entries`: put named state entries (e.g. momentum buffers) back to a saved state.

Example:
    >>> import torch
    >>> a = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.tensor([1.0, 2.0])}}, "param_groups": []}
    >>> b = {"state": {0: {"step": torch.tensor(9.0), "exp_avg": torch.tensor([3.0, 0.0])}}, "param_groups": []}
    >>> child = cross_state(a, b, "average", torch.Generator().manual_seed(0))
    >>> child["state"][0]["exp_avg"].tolist(), float(child["state"][0]["step"])
    ([2.0, 1.0], 3.0)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from torchzero_bridge._checks import check_positive
from torchzero_bridge.zeroth_order.space import warn_ignored

__all__ = [
    "DEFAULT_MUTATION",
    "FRACTION_KEYS",
    "STATE_CROSSOVERS",
    "check_mutate",
    "check_reset",
    "cross_state",
    "mutable_value",
    "mutate_groups",
    "reset_entries",
]

STATE_CROSSOVERS = ("swap", "average", "none")
"""How a child's optimizer state is made from its parents' (see :func:`cross_state`)."""

FRACTION_KEYS = frozenset({"betas", "momentum", "dampening", "alpha", "rho"})
"""Group options that are fractions in ``(0, 1)``: :func:`mutate_groups` adds its noise to their logit."""

DEFAULT_MUTATION = {"lr": 0.2, "betas": 0.05, "momentum": 0.05}
"""What ``mutate=True`` means: these sigmas, for the options the member optimizer has."""

_COUNTERS = frozenset({"step"})  # state entries that count steps: never averaged
_LOGIT_LIMIT = 30.0  # sigmoid(+-30) is still strictly inside (0, 1) in float64
_LOG_LIMIT = 50.0  # exp(+-50) keeps a positive option positive and finite


def cross_state(
    sd_a: Mapping[str, Any], sd_b: Mapping[str, Any], how: str, generator: torch.Generator
) -> dict[str, Any]:
    """A child's torch ``state_dict`` from two parents' (``sd_a`` from the better one).

    The result has torch's two entries: ``"state"`` (per-parameter state, keyed by parameter
    index) crossed as ``how`` says, and ``"param_groups"``, a copy of ``sd_a``'s.

    * ``"swap"``: each parameter's whole state entry (e.g. Adam's ``step``, ``exp_avg`` and
      ``exp_avg_sq`` together, so they stay consistent) is copied from one parent chosen with
      probability 1/2 (one ``torch.rand`` draw per parameter index in the union of both
      parents', in increasing order); a parent without state for that index gives none;
    * ``"average"``: floating-point tensors present in both parents with one shape and dtype are
      averaged, ``(a + b) / 2``; everything else (step counters named ``step``, integer tensors,
      Python values, entries of one parent only) is copied from ``sd_a`` (or from the parent that
      has it). Draws nothing;
    * ``"none"``: empty state (a fresh optimizer's). Draws nothing.

    Args:
        sd_a: the better parent's ``state_dict()``.
        sd_b: the other parent's ``state_dict()``.
        how: ``"swap"``, ``"average"`` or ``"none"``.
        generator: the random generator (CPU) for ``"swap"``.

    Returns:
        ``{"state": {...}, "param_groups": [...]}``, every tensor a new copy.

    Raises:
        ValueError: unknown ``how``.

    Example:
        >>> import torch
        >>> a = {"state": {0: {"m": torch.zeros(2)}, 1: {"m": torch.zeros(1)}}, "param_groups": [{"lr": 0.1}]}
        >>> b = {"state": {0: {"m": torch.ones(2)}, 1: {"m": torch.ones(1)}}, "param_groups": [{"lr": 0.5}]}
        >>> child = cross_state(a, b, "swap", torch.Generator().manual_seed(1))
        >>> [child["state"][i]["m"].tolist() for i in (0, 1)], child["param_groups"]
        ([[1.0, 1.0], [0.0]], [{'lr': 0.1}])
    """
    if how not in STATE_CROSSOVERS:
        raise ValueError(f"cross_state: how expected one of {STATE_CROSSOVERS}, got {how!r}")
    sa, sb = sd_a["state"], sd_b["state"]
    state: dict[Any, Any] = {}
    if how == "swap":
        for index in sorted(set(sa) | set(sb)):
            pick = sa if float(torch.rand((), generator=generator)) < 0.5 else sb
            if index in pick:
                state[index] = _copy(pick[index])
    elif how == "average":
        for index in sorted(set(sa) | set(sb)):
            if index in sa and index in sb:
                state[index] = {k: _mean(k, v, sb[index].get(k)) for k, v in sa[index].items()}
            else:
                state[index] = _copy(sa[index] if index in sa else sb[index])
    return {"state": state, "param_groups": _copy(list(sd_a["param_groups"]))}


def _mean(key: str, a: Any, b: Any) -> Any:
    if (
        key not in _COUNTERS
        and isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.is_floating_point()
        and a.dtype == b.dtype
        and a.shape == b.shape
    ):
        return (a.detach() + b.detach().to(a.device)) / 2
    return _copy(a)


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_copy(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return copy.deepcopy(value)


def mutable_value(value: Any) -> bool:
    """Whether :func:`mutate_groups` can mutate a group option with this value.

    A real number (not a bool), a 0-dim floating-point tensor, or a tuple or list of real numbers.

    Example:
        >>> mutable_value(0.1), mutable_value((0.9, 0.999)), mutable_value(True), mutable_value(None)
        (True, True, False, False)
    """
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and value.is_floating_point()
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(_is_real(v) for v in value)
    return _is_real(value)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mutate_groups(
    groups: Iterable[Mapping[str, Any]], sigmas: Mapping[str, float], generator: torch.Generator
) -> list[dict[str, Any]]:
    """Copies of ``groups`` with log-normal noise on the options named in ``sigmas``.

    For each group in order and each name of ``sigmas`` in sorted order that the group has,
    one ``N(0, 1)`` draw ``z`` per component (a tuple such as ``betas`` has one per entry):

    * a name in :data:`FRACTION_KEYS` (``betas``, ``momentum``, ``dampening``, ``alpha``, ``rho``):
      a component strictly inside ``(0, 1)`` becomes ``sigmoid(logit(v) + sigma z)`` (its logit
      clipped to ``+-30``), so it stays inside ``(0, 1)``; ``0`` and ``1`` stay as they are;
    * any other name (``lr``, ``weight_decay``...): ``v * exp(sigma z)`` (exponent clipped to
      ``+-50``), so a positive option stays positive and ``0`` stays ``0``.

    Args:
        groups: param groups (e.g. a ``state_dict()``'s ``"param_groups"``).
        sigmas: option name -> standard deviation of the noise (0 draws but changes nothing).
        generator: the random generator (CPU).

    Returns:
        New group dicts; the options keep their container type (float, tuple, list, 0-dim tensor).

    Raises:
        TypeError: a named option holds a value :func:`mutable_value` rejects.

    Example:
        >>> import torch
        >>> g = [{"params": [0], "lr": 0.01, "betas": (0.9, 0.999)}]
        >>> child = mutate_groups(g, {"lr": 0.5, "betas": 0.5}, torch.Generator().manual_seed(0))
        >>> child[0]["lr"] > 0, all(0 < b < 1 for b in child[0]["betas"]), g[0]["lr"]
        (True, True, 0.01)
    """
    out = [dict(g) for g in groups]
    for g in out:
        for key in sorted(sigmas):
            if key not in g:
                continue
            value = g[key]
            if not mutable_value(value):
                raise TypeError(f"mutate: the group option {key!r} is {value!r}; only real numbers can be mutated")
            parts = [float(value)] if not isinstance(value, (list, tuple)) else [float(v) for v in value]
            z = torch.randn(len(parts), generator=generator, dtype=torch.float64).tolist()
            new = [_mutate_one(v, float(sigmas[key]) * zi, key in FRACTION_KEYS) for v, zi in zip(parts, z)]
            if isinstance(value, torch.Tensor):
                g[key] = torch.tensor(new[0], dtype=value.dtype, device=value.device)
            elif isinstance(value, (list, tuple)):
                g[key] = new if isinstance(value, list) else tuple(new)
            else:
                g[key] = new[0]
    return out


def _mutate_one(v: float, noise: float, fraction: bool) -> float:
    if fraction:
        if not 0.0 < v < 1.0:
            return v
        y = max(-_LOGIT_LIMIT, min(_LOGIT_LIMIT, math.log(v / (1.0 - v)) + noise))
        return 1.0 / (1.0 + math.exp(-y))
    return v * math.exp(max(-_LOG_LIMIT, min(_LOG_LIMIT, noise)))


def reset_entries(state: Mapping[Any, Any], saved: Mapping[Any, Any], keys: Iterable[str] | None) -> dict[Any, Any]:
    """``state`` (per-parameter) with the entries named in ``keys`` copied from ``saved``.

    Args:
        state: a child's per-parameter state (``{index: {name: value}}``).
        saved: a saved per-parameter state of the same layout (e.g. right after a first step).
        keys: entry names to take from ``saved`` where it has them; ``None``: the whole of
            ``saved`` (``state`` is then not used).

    Returns:
        A new per-parameter state; its tensors are copies.

    Example:
        >>> import torch
        >>> child = {0: {"momentum_buffer": torch.tensor([5.0]), "sq": torch.tensor([2.0])}}
        >>> first = {0: {"momentum_buffer": torch.tensor([0.5]), "sq": torch.tensor([0.0])}}
        >>> out = reset_entries(child, first, ["momentum_buffer"])
        >>> out[0]["momentum_buffer"].tolist(), out[0]["sq"].tolist()
        ([0.5], [2.0])
    """
    if keys is None:
        return _copy(dict(saved))
    names = set(keys)
    out = _copy(dict(state))
    for index, entry in out.items():
        for name, value in saved.get(index, {}).items():
            if name in names:
                entry[name] = _copy(value)
    return out


def check_mutate(mutate: Any, groups: list[dict[str, Any]], owner: str) -> dict[str, float]:
    """The checked ``mutate=`` option as ``{option name: sigma}`` (empty: no mutation).

    Args:
        mutate: ``None``/``False``, ``True`` (:data:`DEFAULT_MUTATION`, for the options ``groups``
            have) or a mapping of option name to a sigma ``>= 0``.
        groups: the member optimizer's param groups.
        owner: class name for messages.

    Raises:
        TypeError: ``mutate`` of another type; a named option whose value cannot be mutated.
        ValueError: a negative sigma; a name no group has.

    Example:
        >>> check_mutate(True, [{"params": [], "lr": 0.1, "momentum": 0.9}], "Swarm")
        {'lr': 0.2, 'momentum': 0.05}
        >>> check_mutate({"lrr": 0.1}, [{"params": [], "lr": 0.1}], "Swarm")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Swarm: mutate names 'lrr', an option the member optimizer's param groups do not have ...
    """
    if mutate is None or mutate is False:
        return {}
    names = sorted({k for g in groups for k in g if k not in ("params", "param_names")})
    if mutate is True:
        return {
            k: s
            for k, s in DEFAULT_MUTATION.items()
            if k in names and all(mutable_value(g[k]) for g in groups if k in g)
        }
    if not isinstance(mutate, Mapping):
        raise TypeError(f"{owner}: mutate expected None, True or a dict of option name -> sigma, got {mutate!r}")
    out: dict[str, float] = {}
    for key, sigma in mutate.items():
        if key not in names:
            raise ValueError(
                f"{owner}: mutate names {key!r}, an option the member optimizer's param groups do not have "
                f"(they have {names})"
            )
        bad = [g[key] for g in groups if key in g and not mutable_value(g[key])]
        if bad:
            raise TypeError(f"{owner}: mutate names {key!r}, whose value {bad[0]!r} is not a real number or tuple")
        out[key] = check_positive(sigma, f"mutate[{key!r}]", owner, allow_zero=True)
    return out


def check_reset(reset: Any, crossover: str, owner: str) -> bool | tuple[str, ...]:
    """``reset_state`` as ``False``, ``True`` or a tuple of state entry names (warns if it makes ``crossover`` moot).

    Example:
        >>> check_reset(("exp_avg",), "swap", "SwarmOfOptimizers")
        ('exp_avg',)
    """
    if isinstance(reset, bool):
        if reset and crossover != "none":
            warn_ignored("state_crossover", "reset_state=True gives children the saved initial state instead")
        return reset
    names = (reset,) if isinstance(reset, str) else tuple(reset) if isinstance(reset, Iterable) else None
    if not names or not all(isinstance(k, str) for k in names):
        raise TypeError(f"{owner}: reset_state expected True, False or state entry names, got {reset!r}")
    return names
