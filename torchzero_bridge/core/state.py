"""The one ``state_dict`` format: tensors and plain Python values only.

A checkpoint must load with ``torch.load``'s secure default (``weights_only=True``) and loading
must never unpickle anything, so every state is made of ``torch.Tensor``, ``dict``, ``list``,
``tuple``, ``int``, ``float``, ``bool``, ``str`` and ``None``. :func:`to_plain` converts the
host-side values the external-solver wrappers keep (numpy arrays and scalars, scipy
``OptimizeResult``\\ s) into that form; :func:`from_plain` turns tensors back into numpy arrays
for code that works on the float64 host vector. :func:`check_plain` validates a loaded state
before anything uses it.

Every optimizer of the package derives from :class:`StatefulOptimizer`, so every
``state_dict()`` has one layout: torch's two entries plus one more::

    {
        "state": {0: {...}, 1: {...}},      # torch: per-parameter state, keyed by parameter index
        "param_groups": [{...}, ...],       # torch: group options (plain values), "params" as indices
        "torchzero_bridge": {               # this library: the optimizer-wide state
            "format": 1,
            "class": "RandomWalk",          # the class that saved it
            "state": {...},                 # what a later step needs (RNG, best point, inner optimizers...)
        },
    }

It is built with torch's own hooks (``register_state_dict_post_hook`` adds the last entry,
``register_load_state_dict_pre_hook`` checks and removes it before torch loads the rest,
``register_load_state_dict_post_hook`` restores it), so ``state_dict``/``load_state_dict`` are
torch's. Loading checks, before anything changes: plain values only (``TypeError`` naming the
field), the entry's layout and format, the saving class (this class or a base of it), and
parameter indices as the only keys of ``"state"`` (``ValueError``). Checkpoints written in the
earlier layouts (a top-level ``"bridge"`` or ``"zeroth_order"`` entry, or
``state["derivative_free"]``) still load.

Example:
    >>> import numpy as np
    >>> from torchzero_bridge.core.state import from_plain, to_plain
    >>> plain = to_plain({"x": np.array([1.0, 2.0]), "fun": np.float64(0.5), "f": print}, drop_objects=True)
    >>> sorted(plain), type(plain["x"]).__name__, type(plain["fun"]).__name__
    (['fun', 'x'], 'Tensor', 'float')
    >>> from_plain(plain)["x"].tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from torchzero_bridge.core.record import keeps_grad_mode

__all__ = ["FORMAT", "KEY", "StatefulOptimizer", "check_plain", "from_plain", "to_plain"]

KEY = "torchzero_bridge"
"""The ``state_dict`` entry holding the optimizer-wide state."""

FORMAT = 1
"""Version of the layout under :data:`KEY`; loading refuses any other."""

_LEGACY_TOP = ("bridge", "zeroth_order")  # earlier layouts: optimizer-wide state as a top-level entry
_LEGACY_IN_STATE = "derivative_free"  # earlier layout: inside torch's "state"

_SCALARS = (bool, int, float, str, type(None))
_DROP = object()


def to_plain(value: Any, *, drop_objects: bool = False, where: str = "state") -> Any:
    """``value`` with numpy arrays as tensors, numpy scalars as Python numbers, mappings as dicts.

    Args:
        value: nested dicts (any ``Mapping``, e.g. ``OptimizeResult``), lists, tuples, arrays,
            tensors and scalars.
        drop_objects: leave out any other object (callables, scipy operators, pools) instead
            of raising; inside a list or tuple such an object becomes ``None``.
        where: path used in error messages.

    Raises:
        TypeError: an object that is not plain data, when ``drop_objects`` is false.
    """
    out = _convert(value, drop_objects, where)
    return None if out is _DROP else out


def _convert(value: Any, drop: bool, where: str) -> Any:
    if isinstance(value, bool) or type(value) in _SCALARS:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.generic):
        return value.item() if not isinstance(value, np.object_) else _convert(value.item(), drop, where)
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [_convert(v, drop, f"{where}[{i}]") for i, v in enumerate(value.tolist())]
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, (int, float, str)):  # subclasses (IntEnum, ...) as the plain base type
        base = int if isinstance(value, int) else float if isinstance(value, float) else str
        return base(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                if drop:
                    continue
                raise TypeError(f"{where}: key {k!r} is not a str or int")
            c = _convert(v, drop, f"{where}[{k!r}]")
            if c is not _DROP:
                out[k] = c
        return out
    if isinstance(value, (list, tuple)):
        items = [_convert(v, drop, f"{where}[{i}]") for i, v in enumerate(value)]
        items = [None if v is _DROP else v for v in items]
        return items if isinstance(value, list) else tuple(items)
    if drop:
        return _DROP
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be saved in a state_dict (only tensors and plain Python values)"
    )


def from_plain(value: Any) -> Any:
    """``value`` with every tensor as a numpy array (CPU copy); everything else unchanged.

    Example:
        >>> import torch
        >>> from_plain({"a": [torch.ones(2)]})["a"][0].tolist()
        [1.0, 1.0]
    """
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_plain(v) for v in value)
    return value


def check_plain(value: Any, where: str = "state_dict") -> None:
    """Raise ``TypeError`` naming the first entry that is not a tensor or plain Python value.

    Loading code calls this before using a state, so a crafted state (e.g. holding ``bytes``
    meant for ``pickle.loads``, or an object) is refused before anything reads it.

    Example:
        >>> check_plain({"a": [1, 2.0, "x", None]})
        >>> check_plain({"blob": b"..."})
        Traceback (most recent call last):
        ...
        TypeError: state_dict['blob']: expected a tensor or a plain Python value, got bytes
    """
    if isinstance(value, torch.Tensor) or type(value) in _SCALARS:
        return
    if type(value) is dict:
        for k, v in value.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where}: key {k!r} is not a str or int")
            check_plain(v, f"{where}[{k!r}]")
        return
    if type(value) in (list, tuple, torch.Size):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: expected a tensor or a plain Python value, got {type(value).__name__}")


class StatefulOptimizer(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` whose ``state_dict`` has the package's one layout (module docstring).

    List it first in the bases. Subclasses keep per-parameter state in ``self.state`` (torch
    saves it) and return their optimizer-wide state from :meth:`_extra_state`; loading calls
    :meth:`_check_extra_state` before torch loads anything and :meth:`_load_extra_state` after.

    Example:
        >>> class Counting(StatefulOptimizer):
        ...     def __init__(self, params):
        ...         super().__init__(params, {"lr": 0.1})
        ...         self.calls = 0
        ...     def _extra_state(self):
        ...         return {"calls": self.calls}
        ...     def _load_extra_state(self, state):
        ...         self.calls = state["calls"]
        >>> a = Counting([torch.zeros(1)]); a.calls = 3
        >>> sd = a.state_dict()
        >>> sd["torchzero_bridge"]
        {'format': 1, 'class': 'Counting', 'state': {'calls': 3}}
        >>> b = Counting([torch.zeros(1)]); b.load_state_dict(sd); b.calls
        3
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:  # every optimizer of the package: an interrupt never leaves autograd off
            cls.step = keeps_grad_mode(cls.__dict__["step"])  # type: ignore[method-assign]

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self._loaded_extra: dict[str, Any] | None = None
        self.register_state_dict_post_hook(_add_entry)
        self.register_load_state_dict_pre_hook(_take_entry)
        self.register_load_state_dict_post_hook(_restore_entry)

    def _extra_state(self) -> dict[str, Any]:
        """The optimizer-wide state a later ``step`` needs (tensors and plain values; copied when saved)."""
        return {}

    def _check_extra_state(self, state: dict[str, Any]) -> None:
        """Refuse a saved :meth:`_extra_state` that does not fit this optimizer (before anything is loaded)."""

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` returned (a private copy: it may be kept as is)."""


def _add_entry(opt: torch.optim.Optimizer, sd: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(opt, StatefulOptimizer)
    sd["state"] = to_plain(sd["state"], where="state")
    sd["param_groups"] = to_plain(sd["param_groups"], where="param_groups")
    own = to_plain(opt._extra_state(), where=f"{KEY}['state']")  # copies every tensor
    sd[KEY] = {"format": FORMAT, "class": type(opt).__name__, "state": own}
    return sd


def _take_entry(opt: torch.optim.Optimizer, sd: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(opt, StatefulOptimizer)
    check_plain(sd)  # before torch deep-copies anything: nothing below can run code
    sd = dict(sd)
    if not isinstance(sd.get("state"), dict) or not isinstance(sd.get("param_groups"), list):
        raise ValueError(f"state_dict: expected torch's 'state' dict and 'param_groups' list, got keys {_keys(sd)}")
    own = _entry(opt, sd)
    bad = [k for k in sd["state"] if type(k) is not int]
    if bad:
        raise ValueError(f"state_dict['state']: keys must be parameter indices, got {bad[0]!r}")
    own = copy.deepcopy(own)  # plain values only: a private copy the optimizer may keep
    opt._check_extra_state(own)
    opt._loaded_extra = own
    return sd


def _entry(opt: StatefulOptimizer, sd: dict[str, Any]) -> dict[str, Any]:
    """Pop the optimizer-wide state out of ``sd`` (any layout) and check its frame."""
    if KEY not in sd:
        for key in _LEGACY_TOP:
            if isinstance(sd.get(key), dict):
                return sd.pop(key)
        if isinstance(sd["state"].get(_LEGACY_IN_STATE), dict):
            sd["state"] = dict(sd["state"])
            return sd["state"].pop(_LEGACY_IN_STATE)
        raise ValueError(
            f"state_dict: no {KEY!r} entry; this state was not saved by a torchzero_bridge optimizer "
            f"(keys: {_keys(sd)})"
        )
    entry = sd.pop(KEY)
    if not isinstance(entry, dict) or set(entry) != {"class", "format", "state"}:
        got = _keys(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"state_dict[{KEY!r}]: expected the keys ['class', 'format', 'state'], got {got}")
    if entry["format"] != FORMAT or type(entry["format"]) is not int:
        got = entry["format"]
        raise ValueError(f"state_dict[{KEY!r}]: format {got!r} is not supported (this version reads {FORMAT})")
    names = [c.__name__ for c in type(opt).__mro__]
    if entry["class"] not in names:
        raise ValueError(f"state_dict: it was saved by {entry['class']!r}, not by a {type(opt).__name__}")
    if not isinstance(entry["state"], dict):
        raise ValueError(f"state_dict[{KEY!r}]['state']: expected a dict, got {type(entry['state']).__name__}")
    return entry["state"]


def _keys(d: dict[Any, Any]) -> list[str]:
    return sorted(map(str, d))


def _restore_entry(opt: torch.optim.Optimizer) -> None:
    assert isinstance(opt, StatefulOptimizer)
    own, opt._loaded_extra = opt._loaded_extra, None
    if own is not None:
        opt._load_extra_state(own)
