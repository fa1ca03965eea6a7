"""Checks on what an optimizer is given: tensors that share memory, group options it would ignore.

* :func:`check_no_overlap`: two parameters that are views of one another (or otherwise share
  memory) cannot both hold the solver's answer: writing one changes the other, and the last
  write wins. They are rejected with an error naming both.
* :class:`GroupOptionsChecked`: a ``torch.optim.Optimizer`` base whose ``add_param_group``
  warns (:class:`~torchzero_bridge.errors.IgnoredOptionWarning`) about param-group keys the
  optimizer never reads, such as a misspelt ``lrr``.
* :func:`check_group_bounds` and :func:`clamp_to_group_bounds`: per-group ``bounds`` for
  optimizers that hand the update to a plain torch optimizer (gradient estimators with
  ``opt=``): validated when the group is added, applied by projecting after each update.

Example:
    >>> import torch
    >>> w = torch.zeros(4)
    >>> check_no_overlap([w, w[1:3]], ["w", "w[1:3]"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: w and w[1:3] share memory (one is a view of the other, or they overlap); pass each tensor once ...
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.errors import IgnoredOptionWarning

__all__ = [
    "GroupOptionsChecked",
    "check_added_group",
    "check_group_bounds",
    "check_groups_disjoint",
    "check_no_overlap",
    "clamp_to_group_bounds",
    "estimator_group_keys",
    "group_labels",
    "require_floating",
]

_MASK_LIMIT = 1 << 26  # elements: beyond this, interleaved strided views are taken to overlap


def _span(t: torch.Tensor) -> tuple[int, int] | None:
    """``(first byte, end byte)`` of the memory ``t`` can reach, or ``None`` (empty, no storage)."""
    numel = t.numel()
    if numel == 0 or t.is_meta or t.layout != torch.strided:
        return None
    try:
        start = t.data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without memory of their own
        return None
    item = t.element_size()
    if t.is_contiguous():
        return start, start + numel * item
    reach = sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))
    return start, start + (reach + 1) * item


def _dense(t: torch.Tensor) -> bool:
    """Every byte between ``t``'s first and last element belongs to ``t``."""
    reach = sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))
    return reach + 1 == t.numel()


def _share(a: torch.Tensor, sa: tuple[int, int], b: torch.Tensor, sb: tuple[int, int]) -> bool:
    """Whether ``a`` and ``b``, whose spans intersect, have an element in common."""
    if _dense(a) and _dense(b):
        return True  # two gap-free spans that intersect share an element
    item = a.element_size()
    lo, hi = min(sa[0], sb[0]), max(sa[1], sb[1])
    if item != b.element_size() or (sa[0] - sb[0]) % item or (hi - lo) // item > _MASK_LIMIT:
        return True  # cannot tell element by element: take them to overlap
    mask = torch.zeros((hi - lo) // item, dtype=torch.bool)
    torch.as_strided(mask, a.shape, a.stride(), (sa[0] - lo) // item).fill_(True)
    return bool(torch.as_strided(mask, b.shape, b.stride(), (sb[0] - lo) // item).any())


def check_no_overlap(params: Sequence[torch.Tensor], labels: Sequence[str]) -> None:
    """Raise ``ValueError`` naming both tensors when two of ``params`` share memory.

    Views that interleave without a common element (``w[::2]`` and ``w[1::2]``) are allowed.
    The same tensor given twice is for the caller to report (it has its own message).

    Args:
        params: the parameter tensors.
        labels: one name per tensor for the message.

    Example:
        >>> w = torch.zeros(4)
        >>> check_no_overlap([w[::2], w[1::2]], ["even", "odd"])
    """
    by_device: dict[torch.device, list[tuple[int, int, int]]] = {}
    for i, p in enumerate(params):
        s = _span(p)
        if s is not None:
            by_device.setdefault(p.device, []).append((s[0], s[1], i))
    for spans in by_device.values():
        spans.sort()
        active: list[tuple[int, int, int]] = []  # spans that reach past the current start
        reach = -1
        for entry in spans:
            start = entry[0]
            if start >= reach:  # the usual case: clear of everything before
                active, reach = [entry], entry[1]
                continue
            for other in [e for e in active if e[1] > start]:
                a, b = params[other[2]], params[entry[2]]
                if a is not b and _share(a, other[:2], b, entry[:2]):
                    first, second = sorted((other[2], entry[2]))
                    raise ValueError(
                        f"{labels[first]} and {labels[second]} share memory (one is a view of the other, or they "
                        "overlap); pass each tensor once and no views of it"
                    )
            active.append(entry)
            reach = max(reach, entry[1])


def group_labels(param_groups: Sequence[Mapping[str, Any]]) -> tuple[list[torch.Tensor], list[str]]:
    """Every tensor of ``param_groups`` with a label naming its group and position (or its name).

    Example:
        >>> w = torch.zeros(2)
        >>> group_labels([{"params": [w]}])[1]
        ["param_groups[0]['params'][0] (shape (2,), torch.float32)"]
    """
    tensors: list[torch.Tensor] = []
    labels: list[str] = []
    for gi, group in enumerate(param_groups):
        names = group.get("param_names")
        for j, p in enumerate(group["params"]):
            name = names[j] if names is not None and j < len(names) else None
            where = f"'{name}'" if name else f"param_groups[{gi}]['params'][{j}]"
            tensors.append(p)
            labels.append(f"{where} (shape {tuple(p.shape)}, {p.dtype})" if isinstance(p, torch.Tensor) else where)
    return tensors, labels


def check_groups_disjoint(param_groups: Sequence[Mapping[str, Any]]) -> None:
    """:func:`check_no_overlap` over every tensor of ``param_groups``, labelled by group and position.

    Example:
        >>> w = torch.zeros(3)
        >>> check_groups_disjoint([{"params": [w]}, {"params": [w.view(3, 1)]}])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: param_groups[0]['params'][0] (shape (3,), torch.float32) and param_groups[1]['params'][0] ...
    """
    check_no_overlap(*group_labels(param_groups))


class GroupOptionsChecked(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` whose ``add_param_group`` warns about keys it will never read.

    A param group may carry ``params``, ``param_names`` and the keys of the optimizer's
    ``defaults``; any other key gives an :class:`~torchzero_bridge.errors.IgnoredOptionWarning`
    naming it (with the closest known key). Optimizers that pass their groups' other options
    on to inner optimizers set :attr:`forwards_group_options`.

    Example:
        >>> import warnings
        >>> class Plain(GroupOptionsChecked):
        ...     def __init__(self, params):
        ...         super().__init__(params, {"lr": 0.1})
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     opt = Plain([{"params": [torch.zeros(1)], "lrr": 0.5}])
        >>> str(caught[0].message)
        "Plain: param_groups[0] option 'lrr' is not used by Plain and is ignored (did you mean 'lr'?)"
    """

    forwards_group_options: ClassVar[bool] = False
    """Other group keys go to an inner optimizer, which judges them."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, warning first about keys the optimizer does not use.

        The new group's tensors must not share memory with any other, and its ``bounds`` must
        be valid (see :func:`check_added_group`); otherwise it is not added.
        """
        if isinstance(param_group, Mapping) and not self.forwards_group_options:
            known = dict.fromkeys(self._group_keys())
            warn_unknown_group_keys(param_group, known, type(self).__name__, len(self.param_groups))
        super().add_param_group(param_group)
        check_added_group(self)

    def _group_keys(self) -> set[str]:
        """The param-group keys this optimizer reads (default: those of ``defaults``)."""
        return set(self.defaults)


def estimator_group_keys(jac: Any) -> set[str]:
    """The per-group options (e.g. ``h``) a gradient estimator given as ``jac`` reads; empty for other ``jac``.

    Example:
        >>> from torchzero_bridge.zeroth_order import FDM
        >>> estimator_group_keys(FDM()), estimator_group_keys(True)
        ({'h'}, set())
    """
    if not hasattr(jac, "make_scipy_jac"):
        return set()
    return set(getattr(jac, "defaults", {}))


def warn_unknown_group_keys(group: Mapping[str, Any], known: Mapping[str, Any], owner: str, index: int) -> None:
    """Warn (:class:`~torchzero_bridge.errors.IgnoredOptionWarning`) about keys of ``group`` outside ``known``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_unknown_group_keys({"params": [], "lr": 1.0}, {"bounds": None}, "ParticleSwarm", 0)
        >>> "option 'lr' is not used by ParticleSwarm" in str(caught[0].message)
        True
    """
    valid = set(known) | {"params", "param_names"}
    unknown = [k for k in group if k not in valid]
    for key in unknown:
        close = difflib.get_close_matches(str(key), sorted(map(str, known)), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"it reads {sorted(map(str, known))}"
        warn_user(
            f"{owner}: param_groups[{index}] option {key!r} is not used by {owner} and is ignored ({hint})",
            IgnoredOptionWarning,
        )


def require_floating(group: Mapping[str, Any], index: int, owner: str, why: str) -> None:
    """Refuse integer and boolean tensors in param group ``index`` of a gradient-based optimizer.

    Args:
        group: the param group (its ``"params"`` a list of tensors).
        index: the group's index, for the message.
        owner: the optimizer's name.
        why: what needs floating-point tensors, e.g. ``"gradient estimators"``.

    Raises:
        TypeError: naming the tensor, its shape and dtype.

    Example:
        >>> try:
        ...     require_floating({"params": [torch.zeros(2, dtype=torch.int64)]}, 0, "SPSA", "estimators")
        ... except TypeError as e:
        ...     print(str(e)[:55])
        SPSA: param_groups[0]['params'][0] (shape (2,)) has dty
    """
    for j, p in enumerate(group["params"]):
        if isinstance(p, torch.Tensor) and not (p.is_floating_point() or p.is_complex()):
            raise TypeError(
                f"{owner}: param_groups[{index}]['params'][{j}] (shape {tuple(p.shape)}) has dtype {p.dtype}; "
                f"{why} need floating-point (or complex) tensors"
            )


def check_group_bounds(group: Mapping[str, Any], index: int, owner: str) -> None:
    """Validate a group's ``bounds=(lo, hi)``: shapes, no NaN, ``lo <= hi`` (``ValueError`` naming ``bounds``).

    Example:
        >>> check_group_bounds({"params": [torch.zeros(2)], "bounds": (2.0, -2.0)}, 0, "SPSA")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: SPSA: bounds: lower bound 2.0 is above upper bound -2.0 for param_groups[0]...
    """
    if group.get("bounds") is None or not group.get("params"):
        return
    from torchzero_bridge.core.layout import Layout

    padding: list[Mapping[str, Any]] = [{"params": []} for _ in range(index)]  # messages name the right group
    try:
        Layout([*padding, group], allow_integer=True).bounds()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{owner}: {exc}") from None


def check_added_group(optimizer: torch.optim.Optimizer) -> None:
    """Check the group just added to ``optimizer``: no tensor shares memory with another, valid ``bounds``.

    On an error the group is removed again, so the optimizer is left as it was.

    Raises:
        ValueError: overlapping tensors (naming both) or bad bounds (naming ``bounds``).

    Example:
        >>> w = torch.zeros(2)
        >>> opt = torch.optim.SGD([w], lr=0.1)
        >>> opt.add_param_group({"params": [w[:1]]})
        >>> check_added_group(opt)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: param_groups[0]['params'][0] (shape (2,), torch.float32) and param_groups[1]['params'][0] ...
        >>> len(opt.param_groups)
        1
    """
    groups = optimizer.param_groups
    try:
        check_groups_disjoint(groups)
        check_group_bounds(groups[-1], len(groups) - 1, type(optimizer).__name__)
    except ValueError:
        groups.pop()
        raise


@torch.no_grad()
def clamp_to_group_bounds(param_groups: Sequence[Mapping[str, Any]]) -> None:
    """Project every tensor into its group's ``bounds`` in place (groups without bounds are skipped).

    ``bounds=(lo, hi)``: each side ``None``, a number, a tensor broadcastable to the parameter,
    or a list with one of those per tensor of the group. Complex tensors are clamped as
    (real, imaginary) pairs.

    Example:
        >>> w = torch.tensor([-3.0, 0.5, 3.0])
        >>> clamp_to_group_bounds([{"params": [w], "bounds": (-1.0, None)}])
        >>> w.tolist()
        [-1.0, 0.5, 3.0]
    """
    for group in param_groups:
        bounds = group.get("bounds")
        if bounds is None:
            continue
        params = list(group["params"])
        sides = [_per_tensor(side, len(params)) for side in bounds]
        for p, lo, hi in zip(params, sides[0], sides[1]):
            r = torch.view_as_real(p) if p.is_complex() else p
            if lo is not None:
                r.clamp_(min=_like(lo, r, p.is_complex()))
            if hi is not None:
                r.clamp_(max=_like(hi, r, p.is_complex()))


def _per_tensor(spec: Any, count: int) -> list[Any]:
    if isinstance(spec, (list, tuple)) and count > 1 and len(spec) == count:
        return list(spec)
    return [spec] * count


def _like(bound: Any, r: torch.Tensor, complex_param: bool) -> Any:
    """A bound as ``clamp_`` takes it: a float, or a tensor on ``r``'s device and dtype that broadcasts to it."""
    if isinstance(bound, (int, float)) and not isinstance(bound, bool):
        return float(bound)
    b = bound.detach() if isinstance(bound, torch.Tensor) else torch.as_tensor(bound, dtype=torch.float64)
    if b.is_complex():
        b = torch.view_as_real(b)
    elif complex_param and b.ndim and tuple(b.shape) != tuple(r.shape):
        b = b.unsqueeze(-1)  # one bound for both the real and the imaginary part
    return b.to(device=r.device, dtype=r.dtype)
