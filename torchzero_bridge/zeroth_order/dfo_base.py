"""Shared base of the derivative-free torch optimizers.

:class:`DerivativeFreeOptimizer` owns what every method needs; each only proposes points and keeps some:

* :class:`~torchzero_bridge.core.device.FlatSpace`: the parameters as one flat vector
  with per-group bounds and integer entries;
* the incumbent (best point seen): the parameters hold it after every ``step``, also one that raises;
* evaluation of a point or a population (one call with a :class:`~torchzero_bridge.BatchObjective`);
* the random generator (``seed=``/``generator=``) and all of the above in ``state_dict()``
  (:attr:`DerivativeFreeOptimizer.method_state` with the generator's state, in the package's one layout).

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

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.batch import BatchObjective
from torchzero_bridge.core.closure import ClosureAdapter, require_closure
from torchzero_bridge.core.device import INTEGER_OPTIMIZERS, FlatSpace
from torchzero_bridge.core.frozen import SkipsFrozen
from torchzero_bridge.core.groups import signature
from torchzero_bridge.core.param_checks import GroupOptionsChecked
from torchzero_bridge.core.record import EvalRecord, new_state
from torchzero_bridge.core.remote import RemoteEvaluator
from torchzero_bridge.core.state import StatefulOptimizer
from torchzero_bridge.errors import ConvergedWarning
from torchzero_bridge.zeroth_order.common import SeededRNG
from torchzero_bridge.zeroth_order.space import to_device, warn_ignored, write_best

__all__ = ["INTEGER_OPTIMIZERS", "DerivativeFreeOptimizer", "FlatSpace", "warn_ignored"]


class DerivativeFreeOptimizer(StatefulOptimizer, SkipsFrozen, GroupOptionsChecked):
    """Base class of the derivative-free torch optimizers; each ``step(closure)`` is one iteration.

    Subclasses implement :meth:`_step` (propose points with :meth:`_evaluate` /
    :meth:`_evaluate_many`, update their state, :attr:`method_state`) and optionally
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
        self._method_state: dict[str, Any] | None = None
        super().__init__(param_list, {"bounds": None, **defaults})
        space = self._space()  # validates dtypes and bounds with messages naming tensors
        if generator is not None and generator.device != space.device:
            raise ValueError(
                f"generator: it lives on {generator.device} but the parameters are on {space.device}; "
                "pass a generator for the parameters' device"
            )
        self.rng = SeededRNG(seed, generator)
        self._evals = EvalRecord(type(self).__name__)  # warns once per optimizer; numbers in the saved state
        self._value: Callable[[], float] | None = None  # the closure's loss, only inside step()
        self._adapter: ClosureAdapter | None = None
        self._batch: Any = None  # what evaluates populations in this step (see _population_source)
        self._remote: RemoteEvaluator | None = None
        self._at_best = True  # the parameters hold the incumbent

    # ------------------------------------------------------------------ public
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (torch semantics) and check its options."""
        index = len(self.param_groups)
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1], f"param_groups[{index}]")

    @property
    def method_state(self) -> dict[str, Any]:
        """The method's working state: incumbent ``best_x``/``best_f``, ``nfev``, ``steps`` and its own entries.

        Optimizer-wide, so it lives here rather than in torch's per-parameter ``self.state``;
        ``state_dict()`` saves it with the generator's state.
        """
        return self._dfo_state()

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
        if self._adapter is None or self._adapter.closure is not closure:
            self._adapter = ClosureAdapter(closure)
        self._value = self._adapter.value
        self._batch = self._population_source(closure, space)
        self._at_best = True
        self._evals.attach(st)
        try:  # every write of the answer is inside: an interrupt never leaves a trial point
            self._sync_incumbent(space, st)
            if not st.get("converged", False):
                self._step(space, st)
            if not self._at_best:
                write_best(space, st["best_x"])
        except BaseException:
            self._evals.restore(lambda best: write_best(space, best))
            raise
        finally:
            self._value = None
            self._batch = None
        st["steps"] += 1
        return torch.tensor(st["best_f"], dtype=torch.float64)

    def _extra_state(self) -> dict[str, Any]:
        return {**self._dfo_state(), "rng": self.rng.state_dict()}

    def _check_extra_state(self, state: dict[str, Any]) -> None:
        n, best = self._space().n, state.get("best_x")
        if isinstance(best, torch.Tensor) and tuple(best.shape) != (n,):
            raise ValueError(
                f"state_dict: it was saved for {best.numel()} parameter entries but this optimizer has {n}"
            )

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        space = self._space()
        rng = state.pop("rng", None)
        if rng is not None:
            self.rng.load_state_dict(rng)
        self._method_state = to_device(state, space.device)
        self._load_state(space, self._method_state)

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
        warn_user(
            f"{type(self).__name__} has converged ({why}); later steps evaluate nothing and return the best loss: "
            "stop on `opt.converged`",
            ConvergedWarning,
        )

    def _generator(self, space: FlatSpace) -> torch.Generator:
        """The random generator for the parameters' device."""
        return self.rng.get(space.device)

    def _space(self) -> FlatSpace:
        """The flat space of the current param groups (rebuilt when tensors or bounds objects change)."""
        key = signature(self.param_groups, ("bounds", "param_names"))
        cached = getattr(self, "_space_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        space = FlatSpace(self.param_groups, allow_integer=self.allow_integer, owner=type(self).__name__)
        self._space_cache = (key, space)
        return space

    def _dfo_state(self) -> dict[str, Any]:
        st = self._method_state
        if st is None:
            st = self._method_state = {**new_state(), "steps": 0}
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
        f, self._at_best = self._evals.add(x, self._value(), ties=ties)
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
            losses = np.array(self._batch.evaluate(space.flat, X), dtype=np.float64)
            if self._evals.add_many(losses, lambda i: X[i].clone(), ties=ties) >= 0:
                self._at_best = False  # a batched pass does not touch the parameters
            return torch.from_numpy(losses)
        st = self._dfo_state()
        before = st["best_x"]
        f = torch.tensor([self._evaluate(space, X[k], ties=ties) for k in range(X.shape[0])], dtype=torch.float64)
        if st["best_x"] is not before:  # keep a copy, not a view that holds the whole population
            st["best_x"] = st["best_x"].clone()
        return f

    def _record_run(self, space: FlatSpace, f: float) -> float:
        """Record a closure run made by someone else at the parameters' current value (see swarms).

        A point outside the bounds (or off the integer grid) is counted but never kept as the answer.
        """
        return self._record_point(space, space.read(), f)

    def _record_point(self, space: FlatSpace, x: torch.Tensor, f: float) -> float:
        """Record a closure run made by someone else at ``x`` (a swarm member stepped on a worker)."""
        if not torch.equal(space.project(x), x):
            self._at_best = False
            return self._evals.count(f)
        f, better = self._evals.add(x, f)
        self._at_best = better
        return f

    # ------------------------------------------------------------------ internals
    executor: Any = None  # population methods that take ``executor=`` set it

    def _population_source(self, closure: Callable[..., Any], space: FlatSpace) -> Any:
        """What evaluates a population: the executor's workers, a BatchObjective, or (None) the closure row by row.

        The closure is sent to the workers once, at its first step; a new closure object is sent anew.
        """
        if self.executor is None:
            return closure if isinstance(closure, BatchObjective) else None
        if self._remote is None or self._remote.source is not closure:
            self._remote = RemoteEvaluator(self.executor, closure, space.flat, extra=self._remote_extra(space))
        return self._remote

    def _remote_extra(self, space: FlatSpace) -> Any:
        """What the workers' tasks need besides the closure (shipped once with it); see swarms."""
        return None

    def _sync_incumbent(self, space: FlatSpace, st: dict[str, Any]) -> None:
        x = space.read()
        best = st["best_x"]
        if best is not None and best.shape == x.shape and torch.equal(best, x):
            if self.stochastic and not st.get("converged", False):  # the incumbent's loss on this batch
                assert self._value is not None
                st["best_f"] = self._evals.count(self._value())
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
        f = self._evals.count(self._value())
        self._evals.keep(px, f)
        self._restart(space, st, px, f)
