"""Shared base of the derivative-free torch optimizers.

:class:`DerivativeFreeOptimizer` owns what every method needs; each only proposes points and keeps some:

* :class:`~torchzero_bridge.zeroth_order.space.FlatSpace`: the parameters as one flat vector
  with per-group bounds and integer entries;
* the incumbent (best point seen): the parameters hold it after every ``step``, also one that raises;
* evaluation of a point or a population (one call with a :class:`~torchzero_bridge.BatchObjective`);
* the random generator (``seed=``/``generator=``) and all of the above in ``state_dict()``.

With ``stochastic=True`` (walks, searches, annealing) every step first re-evaluates the incumbent,
so one step compares losses on one minibatch. Parameters changed from outside become the incumbent.

A method that can make no further progress sets :attr:`DerivativeFreeOptimizer.converged`
and warns once (:class:`~torchzero_bridge.errors.ConvergedWarning`); its later steps evaluate
nothing and return the best loss, so a budget loop should also stop on it::

    while opt.nfev < budget and not opt.converged:
        opt.step(closure)

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
import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, cast

import torch

from torchzero_bridge.core.batch import BatchObjective
from torchzero_bridge.core.frozen import SkipsFrozen
from torchzero_bridge.core.param_checks import GroupOptionsChecked
from torchzero_bridge.core.remote import RemoteEvaluator
from torchzero_bridge.core.state import check_plain
from torchzero_bridge.errors import ConvergedWarning, NonFiniteLossWarning
from torchzero_bridge.zeroth_order.common import CountedClosure, SeededRNG, require_closure
from torchzero_bridge.zeroth_order.space import (
    INTEGER_OPTIMIZERS,
    FlatSpace,
    to_device,
    user_stacklevel,
    warn_ignored,
    write_best,
)

__all__ = ["INTEGER_OPTIMIZERS", "STATE_KEY", "DerivativeFreeOptimizer", "FlatSpace", "warn_ignored"]

STATE_KEY = "derivative_free"
"""Key of the method's state in ``optimizer.state`` and in ``state_dict()['state']``."""


class DerivativeFreeOptimizer(SkipsFrozen, GroupOptionsChecked):
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
        stochastic: re-evaluate the incumbent at the start of every step (minibatch objectives;
            see the module docstring). Costs one closure run per step.

    Attributes:
        rng: the optimizer's :class:`~torchzero_bridge.zeroth_order.common.SeededRNG`.
        stochastic: whether the incumbent is re-evaluated every step.

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

    needs_closure: ClassVar[bool] = True
    """``step`` must receive the closure (it evaluates the loss itself)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        stochastic: bool = False,
    ) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__}: params expected an iterable of tensors or of param-group dicts, "
                "got a single Tensor"
            )
        if not isinstance(stochastic, bool):
            raise TypeError(f"{type(self).__name__}: stochastic expected True or False, got {stochastic!r}")
        self.stochastic = stochastic
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
        self._batch: Any = None  # what evaluates populations in this step (see _population_source)
        self._remote: RemoteEvaluator | None = None
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
        """The loss at the incumbent (``inf`` before the first step; with ``stochastic=True``, on the latest batch)."""
        return float(self._dfo_state()["best_f"])

    @property
    def converged(self) -> bool:
        """True once the method can make no further progress; later steps then evaluate nothing.

        Cleared when the parameters are changed from outside (the next step starts afresh there).
        """
        return bool(self._dfo_state().get("converged", False))

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
        self._batch = self._population_source(closure, space)
        self._at_best = True
        try:  # every write of the answer is inside: an interrupt never leaves a trial point
            self._sync_incumbent(space, st)
            if not st.get("converged", False):
                self._step(space, st)
            if not self._at_best:
                write_best(space, st["best_x"])
        except BaseException:
            if st["best_x"] is not None:
                write_best(space, st["best_x"])
            raise
        finally:
            self._value = None
            self._batch = None
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
        check_plain(state_dict)  # only tensors and plain values: nothing below can run code
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
        table[STATE_KEY] = to_device(own, space.device)
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

    def _refresh(self, space: FlatSpace, st: dict[str, Any], f: float) -> None:
        """``stochastic=True``: the incumbent was just re-evaluated on this step's batch (loss ``f``)."""

    def _mark_converged(self, st: dict[str, Any], why: str) -> None:
        """Set :attr:`converged` and warn once (:class:`~torchzero_bridge.errors.ConvergedWarning`)."""
        if st.get("converged", False):
            return
        st["converged"] = True
        warnings.warn(
            f"{type(self).__name__} has converged ({why}); later steps evaluate nothing and return the best loss: "
            "stop on `opt.converged`",
            ConvergedWarning,
            stacklevel=user_stacklevel(),
        )

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
        if f < st["best_f"] or (ties and f == st["best_f"] < math.inf):  # a non-finite loss never wins a tie
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
            if f[i] < st["best_f"] or (ties and float(f[i]) == st["best_f"] < math.inf):
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
            what = f"{type(self).__name__}: the closure returned a non-finite loss ({f});"
            warnings.warn(f"{what} such points are treated as +inf and never kept", NonFiniteLossWarning, 4)
        return math.inf

    # ------------------------------------------------------------------ internals
    executor: Any = None  # population methods that take ``executor=`` set it

    def _population_source(self, closure: Callable[..., Any], space: FlatSpace) -> Any:
        """What evaluates a population: the executor's workers, a BatchObjective, or (None) the closure row by row.

        The closure is sent to the workers once, at its first step; a new closure object is sent anew.
        """
        if self.executor is None:
            return closure if isinstance(closure, BatchObjective) else None
        if self._remote is None or self._remote.source is not closure:
            self._remote = RemoteEvaluator(self.executor, closure, space.flat)
        return self._remote

    def _sync_incumbent(self, space: FlatSpace, st: dict[str, Any]) -> None:
        x = space.read()
        best = st["best_x"]
        if best is not None and best.shape == x.shape and torch.equal(best, x):
            if self.stochastic and not st.get("converged", False):  # the incumbent's loss on this batch
                assert self._value is not None
                st["best_f"], st["nfev"] = self._finite(self._value()), st["nfev"] + 1
                self._refresh(space, st, st["best_f"])
            return
        st.pop("converged", None)
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
