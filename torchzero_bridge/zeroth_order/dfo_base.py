"""Shared base of the derivative-free torch optimizers.

:class:`DerivativeFreeOptimizer` owns what every derivative-free method needs, so each
method only proposes points and decides what to keep:

* :class:`FlatSpace`: the parameters as one flat vector on their own device (float64, or
  float32 where the device has no float64), per-group bounds, integer and boolean tensors
  kept integral, lower-precision dtypes rounded exactly as the parameters will hold them;
* the incumbent: the best point seen and its loss. After every ``step`` the parameters hold
  it and ``step`` returns its loss; if the closure raises, the parameters are restored to it;
* evaluation of one point, or of a whole population in one vectorized call when the closure
  is a :class:`~torchzero_bridge.BatchObjective` (one closure run per point otherwise);
* the random generator (``seed=`` or ``generator=``) and everything above in
  ``state_dict()``, so a loaded optimizer continues exactly where the saved one was.

The objective is assumed deterministic. If the parameters are changed between steps from
outside the optimizer, the next ``step`` evaluates them and takes them as the incumbent.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import RandomWalk
    >>> w = torch.tensor([2.0, -1.0], requires_grad=True)
    >>> opt = RandomWalk([w], lr=0.5, seed=0)
    >>> def closure(backward=True):
    ...     return (w ** 2).sum()
    >>> losses = [float(opt.step(closure)) for _ in range(20)]
    >>> losses == sorted(losses, reverse=True) and losses[-1] < 5.0
    True
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, ClassVar, cast

import numpy as np
import torch

from torchzero_bridge.core.batch import BatchObjective
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.param_checks import GroupOptionsChecked
from torchzero_bridge.errors import IgnoredOptionWarning, NonFiniteLossWarning
from torchzero_bridge.zeroth_order.common import CountedClosure, SeededRNG, require_closure

__all__ = ["INTEGER_OPTIMIZERS", "STATE_KEY", "DerivativeFreeOptimizer", "FlatSpace", "warn_ignored"]

STATE_KEY = "derivative_free"
"""Key of the method's state in ``optimizer.state`` and in ``state_dict()['state']``."""

INTEGER_OPTIMIZERS = (
    "RandomSearch",
    "ShrinkingRandomSearch",
    "GridSearch",
    "SequentialSearch",
    "SimulatedAnnealing",
    "EvolutionStrategy",
)
"""Derivative-free optimizers that accept integer and boolean tensors."""


def warn_ignored(option: str, reason: str) -> None:
    """Warn (:class:`~torchzero_bridge.errors.IgnoredOptionWarning`) that ``option`` has no effect.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_ignored("std", "the uniform sampler does not use it")
        >>> str(caught[0].message)
        'std is ignored: the uniform sampler does not use it'
    """
    level, frame = 2, cast("FrameType | None", sys._getframe(1))
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("torchzero_bridge."):
        level, frame = level + 1, frame.f_back  # point at the user's line, outside this package
    warnings.warn(f"{option} is ignored: {reason}", IgnoredOptionWarning, stacklevel=level)


class FlatSpace:
    """The parameters of some param groups as one flat torch vector on their device.

    Args:
        param_groups: torch-style parameter groups; a group's ``bounds=(lo, hi)`` applies to
            its tensors (scalars, tensors shaped like each parameter, or ``None``).
        allow_integer: accept integer and boolean tensors (their entries stay integral).
        owner: the optimizer's name, used in error messages.

    Attributes:
        flat: the :class:`~torchzero_bridge.FlatParams` layout (offsets, names, bounds parser).
        n: length of the flat vector.
        device: where the flat vectors live (the first parameter's device).
        dtype: float64, or float32 on devices without float64 (MPS).
        lo, hi: per-entry bounds (``-inf``/``inf`` where unbounded), integral for integers.
        bounded: entries with both bounds finite.
        integer: entries that belong to integer or boolean tensors.
        group_slices: ``(start, stop)`` of each param group in the flat vector.

    Raises:
        TypeError: an integer or boolean tensor when ``allow_integer`` is False.
        ValueError: malformed bounds, or bounds that contain no integer for an integer tensor.

    Example:
        >>> import torch
        >>> a = torch.zeros(2, requires_grad=True)
        >>> k = torch.zeros(1, dtype=torch.int64)
        >>> space = FlatSpace([{"params": [a, k], "bounds": (-1, 1)}], allow_integer=True, owner="doc")
        >>> space.project(torch.tensor([0.3, 2.0, 0.6], dtype=torch.float64)).tolist()
        [0.30000001192092896, 1.0, 1.0]
    """

    def __init__(self, param_groups: Iterable[dict[str, Any]], *, allow_integer: bool, owner: str) -> None:
        groups = list(param_groups)
        layout = FlatParams(groups, allow_integer=True)
        if not allow_integer and layout.has_integers:
            k = int(np.flatnonzero(layout.integer_mask)[0])
            i = int(np.searchsorted(layout.offsets, k, side="right")) - 1
            raise TypeError(
                f"{layout.name(i)}: {owner} optimizes floating-point tensors only; integer and boolean "
                f"tensors are accepted by {', '.join(INTEGER_OPTIMIZERS)}"
            )
        self.flat = layout
        self.n = layout.n
        params = layout.params
        self.device = params[0].device
        self.dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._real = [torch.view_as_real(p) if p.is_complex() else p for p in params]
        self._slices = list(zip(layout.offsets, layout.offsets[1:]))
        self.group_slices = _group_slices(groups, layout)

        bounds = layout.bounds()
        lo = np.full(self.n, -np.inf) if bounds is None else bounds[0].copy()
        hi = np.full(self.n, np.inf) if bounds is None else bounds[1].copy()
        self._round: list[int] = []  # parameters whose dtype is not the working dtype
        for i, r in enumerate(self._real):
            a, b = self._slices[i]
            if r.dtype == torch.bool:
                lo[a:b] = np.maximum(lo[a:b], 0.0)
                hi[a:b] = np.minimum(hi[a:b], 1.0)
            elif not r.is_floating_point():
                info = torch.iinfo(r.dtype)
                lo[a:b] = np.maximum(lo[a:b], float(info.min))
                hi[a:b] = np.minimum(hi[a:b], float(info.max))
            if r.dtype != self.dtype:
                self._round.append(i)
        ints = layout.integer_mask
        lo[ints] = np.ceil(lo[ints])
        hi[ints] = np.floor(hi[ints])
        empty = np.flatnonzero(lo > hi)
        if empty.size:
            raise ValueError(f"bounds: the bounds of {layout.locate(int(empty[0]))} contain no integer value")
        self.lo = torch.as_tensor(lo, dtype=self.dtype, device=self.device)
        self.hi = torch.as_tensor(hi, dtype=self.dtype, device=self.device)
        self.bounded = torch.isfinite(self.lo) & torch.isfinite(self.hi)
        self.has_bounds = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
        self.integer = torch.as_tensor(ints, device=self.device)
        self.has_integers = layout.has_integers
        # fast path: contiguous floating tensors on the working device, copied with one call
        self._fast = [
            i
            for i, r in enumerate(self._real)
            if r.is_floating_point() and r.device == self.device and r.is_contiguous()
        ]
        self._fast_dst = [self._real[i].detach().view(-1) for i in self._fast]
        self._all_fast = len(self._fast) == len(self._real)
        self._slow = [i for i in range(len(self._real)) if i not in set(self._fast)]
        self._numels = layout.numels
        self._cache: dict[tuple[str, tuple[float, ...]], torch.Tensor] = {}

    # ------------------------------------------------------------------ values
    @torch.no_grad()
    def read(self) -> torch.Tensor:
        """The current parameter values as a new flat vector."""
        if self._all_fast:
            return torch.cat(self._fast_dst).to(self.dtype)
        return torch.cat([r.detach().reshape(-1).to(device=self.device, dtype=self.dtype) for r in self._real])

    @torch.no_grad()
    def write(self, x: torch.Tensor) -> None:
        """Copy flat vector ``x`` into the parameters in place (integers rounded, booleans ``>= 0.5``)."""
        pieces = torch.split(x, self._numels)
        if self._fast:
            torch._foreach_copy_(self._fast_dst, [pieces[i] for i in self._fast])
        for i in self._slow:
            r = self._real[i]
            piece = pieces[i].reshape(r.shape)
            if r.dtype == torch.bool:
                r.copy_(piece >= 0.5)
            elif not r.is_floating_point():
                r.copy_(torch.round(piece))
            else:
                r.copy_(piece)

    @torch.no_grad()
    def project(self, X: torch.Tensor) -> torch.Tensor:
        """Clip to the bounds and round each entry the way its parameter will hold it.

        Args:
            X: a flat vector ``(n,)`` or a population ``(pop, n)``.

        Returns:
            ``X`` clipped to the bounds, integral for integer entries and exactly representable in
            each parameter's dtype (so reading back gives the same values). ``X`` itself is
            returned when nothing needs to change, otherwise a new tensor.
        """
        X = X.to(device=self.device, dtype=self.dtype)
        if self.has_bounds:
            X = torch.maximum(torch.minimum(X, self.hi), self.lo)
        elif self._round:
            X = X.clone()
        for i in self._round:
            a, b = self._slices[i]
            r = self._real[i]
            if r.is_floating_point():
                X[..., a:b] = X[..., a:b].to(r.dtype).to(self.dtype)
            else:
                X[..., a:b] = torch.round(X[..., a:b])
        return X

    def group_vector(self, groups: list[dict[str, Any]], key: str) -> torch.Tensor:
        """Per-entry value of the per-group option ``key`` (e.g. each group's ``lr``); do not modify it."""
        values = tuple(float(g[key]) for g in groups)
        cache_key = (key, values)
        out = self._cache.get(cache_key)
        if out is None:
            out = torch.empty(self.n, dtype=self.dtype, device=self.device)
            for v, (a, b) in zip(values, self.group_slices):
                out[a:b] = v
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[cache_key] = out
        return out


def _group_slices(groups: list[dict[str, Any]], layout: FlatParams) -> list[tuple[int, int]]:
    out = []
    k = 0
    for g in groups:
        count = len(list(g["params"]))
        out.append((layout.offsets[k], layout.offsets[k + count]))
        k += count
    return out


class DerivativeFreeOptimizer(GroupOptionsChecked):
    """Base class of the derivative-free torch optimizers; each ``step(closure)`` is one iteration.

    Subclasses implement :meth:`_step` (propose points with :meth:`_evaluate` /
    :meth:`_evaluate_many`, update their state in ``self.state[STATE_KEY]``) and optionally
    :meth:`_check_group` and :meth:`_restart`.

    Args:
        params: iterable of tensors or of param-group dicts (per-group ``bounds=(lo, hi)``).
        defaults: per-group defaults (``bounds`` is always added).
        seed: seed of the optimizer's own random generator; ``None`` draws one from torch's
            global generator (so ``torch.manual_seed`` also makes runs reproducible).
        generator: use this ``torch.Generator`` (on the parameters' device) instead.

    Attributes:
        rng: the optimizer's :class:`~torchzero_bridge.zeroth_order.common.SeededRNG`.

    Raises:
        TypeError: a single tensor as ``params``, integer tensors for a float-only method,
            ``generator`` that is not a ``torch.Generator``.
        ValueError: both ``seed`` and ``generator``; malformed per-group options.

    Example:
        A method only proposes points; the base keeps the best one in the parameters:

        >>> import torch
        >>> class GaussianProbe(DerivativeFreeOptimizer):
        ...     def __init__(self, params, lr=0.1, seed=None):
        ...         super().__init__(params, {"lr": lr}, seed=seed)
        ...     def _step(self, space, st):
        ...         z = torch.randn(space.n, generator=self._generator(space), dtype=space.dtype)
        ...         lr = space.group_vector(self.param_groups, "lr")
        ...         self._evaluate(space, space.project(st["best_x"] + lr * z))
        >>> w = torch.tensor([1.0, 1.0])
        >>> opt = GaussianProbe([w], lr=0.3, seed=0)
        >>> for _ in range(200):
        ...     loss = opt.step(lambda: float((w ** 2).sum()))
        >>> float(loss) < 0.05, opt.nfev
        (True, 201)
    """

    allow_integer: ClassVar[bool] = False
    """Whether integer and boolean tensors are accepted."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__}: params expected an iterable of tensors or of param-group dicts, "
                "got a single Tensor"
            )
        if seed is not None and generator is not None:
            raise ValueError(f"{type(self).__name__}: seed, generator: give one of them, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{type(self).__name__}: generator expected a torch.Generator, got {type(generator).__name__}"
            )
        param_list: list[Any] = list(params)
        super().__init__(param_list, {"bounds": None, **defaults})
        space = self._space()  # validates dtypes and bounds with messages naming tensors
        if generator is not None and generator.device != space.device:
            raise ValueError(
                f"generator: it lives on {generator.device} but the parameters are on {space.device}; "
                "pass a generator for the parameters' device"
            )
        self.rng = SeededRNG(seed, generator)
        self._value: Callable[[], float] | None = None
        self._closure: Callable[..., Any] | None = None
        self._value_fn: Callable[[], float] | None = None
        self._batch: BatchObjective | None = None
        self._at_best = True  # the parameters hold the incumbent
        self._warned_nonfinite = False

    # ------------------------------------------------------------------ public
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (torch semantics) and check its options."""
        index = len(self.param_groups)
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1], f"param_groups[{index}]")

    @property
    def nfev(self) -> int:
        """Number of loss evaluations so far (every point of a batched call counts)."""
        return int(self._dfo_state()["nfev"])

    @property
    def best_loss(self) -> float:
        """The loss at the incumbent (``inf`` before the first step)."""
        return float(self._dfo_state()["best_f"])

    def step(self, closure: Callable[..., Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One iteration of the method.

        Args:
            closure: re-evaluates the model and returns the loss. A closure that accepts
                ``backward`` is called as ``closure(backward=False)`` under ``torch.no_grad``;
                a :class:`~torchzero_bridge.BatchObjective` also evaluates populations in one call.

        Returns:
            The loss at the best point seen, which the parameters hold, as a 0-dim float64 tensor.

        Raises:
            TypeError: no closure.
        """
        closure = require_closure(closure, type(self).__name__)
        space = self._space()
        st = self._dfo_state()
        if self._closure is not closure:
            self._closure, self._value_fn = closure, CountedClosure(closure, type(self).__name__)
        self._value = self._value_fn
        self._batch = closure if isinstance(closure, BatchObjective) else None
        self._at_best = True
        try:
            self._sync_incumbent(space, st)
            self._step(space, st)
        except BaseException:
            if st["best_x"] is not None:
                space.write(st["best_x"])
            raise
        finally:
            self._value = None
            self._batch = None
        if not self._at_best:
            space.write(st["best_x"])
            for p in space.flat.params:  # gradients from a trial point would not match the parameters
                p.grad = None
        st["steps"] += 1
        return torch.tensor(st["best_f"], dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state; ``state[STATE_KEY]`` holds a copy of the method's state and RNG."""
        sd = super().state_dict()
        own = copy.deepcopy(self._dfo_state())
        own["rng"] = self.rng.state_dict()
        sd["state"] = {**sd["state"], STATE_KEY: own}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (tensors move to the parameters' device)."""
        state_dict = dict(state_dict)
        inner = dict(state_dict.get("state", {}))
        own = copy.deepcopy(inner.pop(STATE_KEY, None))
        state_dict["state"] = inner
        space = self._space()
        best = None if own is None else own.get("best_x")
        if best is not None and tuple(best.shape) != (space.n,):  # checked before anything is loaded
            raise ValueError(
                f"state_dict: it was saved for {best.numel()} parameter entries but this optimizer has {space.n}"
            )
        super().load_state_dict(state_dict)
        table = self._state_table()
        if own is None:
            table.pop(STATE_KEY, None)
            return
        rng = own.pop("rng", None)
        if rng is not None:
            self.rng.load_state_dict(rng)
        table[STATE_KEY] = _to_device(own, space.device)
        self._load_state(space, table[STATE_KEY])

    # ------------------------------------------------------------------ for subclasses
    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        """One iteration: propose, evaluate, update ``st``. The incumbent is ``st['best_x']``."""
        raise NotImplementedError

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        """Validate one param group's options; ``where`` names it (``param_groups[i]``)."""

    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        """Called when the incumbent is (re)set from the parameters: first step or an outside change."""

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        """Check a loaded state against the current parameters (shapes of saved tensors)."""

    def _generator(self, space: FlatSpace) -> torch.Generator:
        """The random generator for the parameters' device."""
        return self.rng.get(space.device)

    def _space(self) -> FlatSpace:
        """The flat space of the current param groups (rebuilt when tensors or bounds objects change)."""
        key = tuple(
            (id(g.get("bounds")), tuple((id(p), p.dtype, p.device, tuple(p.shape)) for p in g["params"]))
            for g in self.param_groups
        )
        cached = getattr(self, "_space_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        space = FlatSpace(self.param_groups, allow_integer=self.allow_integer, owner=type(self).__name__)
        self._space_cache = (key, space)
        return space

    def _state_table(self) -> dict[Any, Any]:
        """torch's ``self.state`` (typed for tensor keys; the method's state sits under a string key)."""
        return cast("dict[Any, Any]", self.state)

    def _dfo_state(self) -> dict[str, Any]:
        table = self._state_table()
        st = table.get(STATE_KEY)
        if st is None:
            st = {"best_x": None, "best_f": math.inf, "nfev": 0, "steps": 0}
            table[STATE_KEY] = st
        return st

    def _evaluate(self, space: FlatSpace, x: torch.Tensor, *, ties: bool = False) -> float:
        """Loss at flat point ``x`` (already projected); updates the incumbent when better.

        Args:
            space: the current flat space.
            x: the point; the parameters are set to it for the closure. When it becomes the
                incumbent it is kept as is (not copied), so callers must not modify it later.
            ties: a loss equal to the incumbent's also replaces it.
        """
        assert self._value is not None, "_evaluate is only valid inside step()"
        space.write(x)
        self._at_best = False
        f = self._finite(self._value())
        st = self._dfo_state()
        st["nfev"] += 1
        if f < st["best_f"] or (ties and f == st["best_f"]):
            st["best_x"], st["best_f"] = x, f
            self._at_best = True
        return f

    def _evaluate_many(self, space: FlatSpace, X: torch.Tensor, *, ties: bool = False) -> torch.Tensor:
        """Losses at the rows of ``X`` (already projected) as a CPU float64 tensor.

        One vectorized call when the closure is a :class:`~torchzero_bridge.BatchObjective`,
        else one closure run per row. The incumbent is updated with the best row.
        """
        assert self._value is not None, "_evaluate_many is only valid inside step()"
        if X.shape[0] == 0:
            return torch.empty(0, dtype=torch.float64)
        if self._batch is not None:
            f = torch.as_tensor(self._batch.evaluate(space.flat, X), dtype=torch.float64)
            st = self._dfo_state()
            st["nfev"] += X.shape[0]
            bad = ~torch.isfinite(f)
            if bool(bad.any()):
                self._finite(math.nan)
                f[bad] = math.inf
            i = int(torch.argmin(f))
            if ties:  # like one-by-one evaluation: the last of equal losses wins
                i = int(torch.nonzero(f == f[i])[-1])
            if f[i] < st["best_f"] or (ties and float(f[i]) == st["best_f"]):
                st["best_x"], st["best_f"] = X[i].clone(), float(f[i])
                self._at_best = False  # a batched pass does not touch the parameters
            return f
        st = self._dfo_state()
        before = st["best_x"]
        f = torch.tensor([self._evaluate(space, X[k], ties=ties) for k in range(X.shape[0])], dtype=torch.float64)
        if st["best_x"] is not before:  # keep a copy, not a view that holds the whole population
            st["best_x"] = st["best_x"].clone()
        return f

    def _record(self, space: FlatSpace, f: float) -> float:
        """Count a closure run made by someone else at the parameters' current value (see swarms)."""
        x = space.read()
        st = self._dfo_state()
        st["nfev"] += 1
        f = self._finite(f)
        self._at_best = False
        if f < st["best_f"]:
            st["best_x"], st["best_f"] = x, f
            self._at_best = True
        return f

    def _finite(self, f: float) -> float:
        if math.isfinite(f):
            return f
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(
                f"{type(self).__name__}: the closure returned a non-finite loss ({f}); such points are "
                "treated as +inf and never kept",
                NonFiniteLossWarning,
                stacklevel=4,
            )
        return math.inf

    # ------------------------------------------------------------------ internals
    def _sync_incumbent(self, space: FlatSpace, st: dict[str, Any]) -> None:
        x = space.read()
        best = st["best_x"]
        if best is not None and best.shape == x.shape and torch.equal(best, x):
            return
        if best is not None and best.shape != x.shape:  # param groups changed: start the method afresh
            kept = {"nfev": st["nfev"], "steps": st["steps"]}
            st.clear()
            st.update(best_x=None, best_f=math.inf, **kept)
        px = space.project(x)
        if px is not x and not torch.equal(px, x):
            space.write(px)
        assert self._value is not None
        f = self._finite(self._value())
        st["nfev"] += 1
        st["best_x"], st["best_f"] = px, f
        self._restart(space, st, px, f)


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device) if obj.is_floating_point() or obj.dtype == torch.bool else obj
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj
