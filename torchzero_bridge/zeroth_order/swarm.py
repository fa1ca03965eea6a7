"""A swarm of independent optimizers, each driving its own copy of the parameters.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import SwarmOfOptimizers
    >>> w = torch.tensor([2.0, -2.0], requires_grad=True)
    >>> opt = SwarmOfOptimizers([w], lambda p: torch.optim.SGD(p, lr=0.1), n=3, seed=0)
    >>> def closure(backward=True):
    ...     opt.zero_grad()
    ...     loss = ((w - 1.0) ** 2).sum()
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> for _ in range(50):
    ...     loss = opt.step(closure)
    >>> float(loss) < 1e-6
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from torchzero_bridge._checks import check_int, check_positive, check_real
from torchzero_bridge.core.closure import ClosureAdapter, loss_to_float
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.core.remote import RemoteEvaluator, check_executor
from torchzero_bridge.zeroth_order.breeding import (
    STATE_CROSSOVERS,
    check_mutate,
    check_reset,
    cross_state,
    mutate_groups,
    reset_entries,
)
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer, warn_ignored
from torchzero_bridge.zeroth_order.initializers import InitSpec, draw_population, resolve_init
from torchzero_bridge.zeroth_order.inner import OptimizerSpec, build_optimizer, check_spec, forward_groups
from torchzero_bridge.zeroth_order.schedules import SizeSchedule, resolve_size_schedule
from torchzero_bridge.zeroth_order.space import check_saved_shape
from torchzero_bridge.zeroth_order.swarm_remote import member_groups, step_members_remotely

__all__ = ["SwarmOfOptimizers"]


class SwarmOfOptimizers(DerivativeFreeOptimizer):
    """A population of parameter copies, each moved by its own torch optimizer.

    Member ``i`` owns a copy of the parameters and an optimizer made by
    ``optimizers_factory(param_groups)`` over the model's own parameter tensors (gradient-based,
    e.g. ``torch.optim.Adam``, or gradient-free, e.g. another optimizer of this package).
    Each swarm step loads every member's copy into the parameters, runs one ``step`` of its
    optimizer with the closure, and stores where it left them; the member's fitness is the
    lowest loss its optimizer saw during that step. A member ranked in the worse half for
    ``patience`` consecutive steps dies and is replaced by a child of the two best members
    (``a`` the best, ``b`` the second): a fresh optimizer from the factory at a uniform crossover
    of their positions (never a copy of one where they differ in two entries or more), which then inherits (see
    :mod:`~torchzero_bridge.zeroth_order.breeding`):

    * per-parameter optimizer state crossed from ``a``'s and ``b``'s ``state_dict()`` by
      ``state_crossover``; then the entries ``reset_state`` names are put back to the dead
      member's slot's *saved initial state*, the state its first optimizer had right after its
      first step (kept per slot, so it doubles the optimizer memory; only with ``reset_state``);
    * with ``mutate``, ``a``'s group options (``lr``, ``betas``...) with log-normal noise; without,
      the factory's options as the swarm forwards them.

    The optimizer-wide state of this package's optimizers (their generator, incumbent, adapted
    step size, the ``state_dict`` entry ``"torchzero_bridge"``) is the child's own, never inherited.
    With ``gravity > 0`` every member then moves that fraction of the way toward the best member.
    The model's parameters end at the best point seen.

    The swarm can grow (``size_schedule=``, or a larger ``n`` set between steps; it never shrinks):
    the added members are children of the two best, bred as above, and step in the same step
    (their new slots have no saved initial state yet: with ``reset_state=True`` they start with
    empty state, with named entries those keep their crossed-over values).

    Member 0 starts at the current parameters, the others where ``init`` puts them (default
    ``"perturb"``: ``start + init_std * N(0, 1)``), clipped to the bounds.
    Member optimizers see a plain closure (one point at a time), so a gradient-based member
    needs the closure to run ``backward`` when asked.

    Args:
        params: iterable of tensors or of param-group dicts.
        optimizers_factory: builds one member's optimizer from the swarm's param groups (without
            ``bounds``): ``lambda p: torch.optim.Adam(p, lr=1e-2)`` or a ``(class, kwargs)`` pair
            such as ``(tzb.RandomWalk, {"lr": 0.1})``. An already-constructed optimizer is refused:
            every member needs one of its own.
        n: number of members (at the first step, with ``size_schedule``).
        patience: steps in the worse half before a member is replaced.
        state_crossover: ``"none"`` (default): empty state, a fresh optimizer's; ``"swap"``: each
            parameter's whole state entry from ``a`` or ``b`` (probability 1/2), so e.g. Adam's moments
            and step count stay consistent; ``"average"``: the mean of matching floating-point
            tensors, the rest (``step``...) from ``a``. The default stays ``"none"`` because inherited
            state fits the parent's position, not the crossover point: with Adam members on
            Rosenbrock, second moments learnt near the valley floor made the child's first steps
            far too long (final loss 1e-3 to 2e-2 instead of 2e-9 to 2e-7, see the guide). Members without state
            (plain SGD, the walks) are unaffected.
        mutate: ``None`` (default: the hyperparameters stay as the user set them), ``True`` (the
            sigmas of :data:`~torchzero_bridge.zeroth_order.breeding.DEFAULT_MUTATION`: ``lr`` 0.2,
            ``betas`` and ``momentum`` 0.05, for the options the member has) or ``{name: sigma}``:
            ``lr`` and other options times ``exp(sigma z)``, ``betas``/``momentum``... noised in
            logit space so they stay in ``(0, 1)``.
        reset_state: ``False`` (default); ``True``: children get the slot's saved initial state
            instead of crossed-over state (``state_crossover`` is then ignored); names such as
            ``("exp_avg",)`` or ``("momentum_buffer",)``: only these entries are reset (momentum
            restarts while e.g. Adam's second moments are inherited).
        size_schedule: the member count per step: ``"linear"``, ``"geometric"`` or a callable of the
            0-based step index (see :mod:`~torchzero_bridge.zeroth_order.schedules`); ``None``: ``n``.
        gravity: fraction in ``[0, 1]`` of the way each member moves toward the best member per step.
        init_std: spread of the initial members around the start.
        init: how members start: ``"perturb"`` (default), ``"fitted"``, a
            :class:`~torchzero_bridge.zeroth_order.ModuleInit`, a module, or ``f(count, generator)``
            returning a ``(count, n)`` tensor (see :mod:`~torchzero_bridge.zeroth_order.initializers`).
            Replaced and added members are children of the best two, not initializer draws.
        bounds: per-group ``(lo, hi)``; member positions are clipped to them.
        seed: seed of the swarm's random generator (initial spread, crossovers and mutations).
        generator: a ``torch.Generator`` to use instead of ``seed``.
        executor: a ``concurrent.futures.Executor`` or a ``dask.distributed.Client``: each
            member's step runs there as one task (its position and optimizer ``state_dict`` go
            out, its new ones and every point it evaluated come back); the run equals the serial
            one. The closure and the factory are shipped once (see the distributed guide).

    Raises:
        TypeError: ``optimizers_factory`` is not a factory (or is a constructed optimizer) or does
            not build an optimizer;
            integer or boolean tensors.
        ValueError: the factory built an optimizer over other tensors than it was given.
        ValueError: ``n < 2``, non-positive ``patience`` or ``init_std``, ``gravity`` outside ``[0, 1]``,
            unknown ``state_crossover`` or ``init``, ``mutate`` naming an option the members lack or a negative sigma.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import RandomWalk, SwarmOfOptimizers
        >>> w = torch.tensor([2.0, -2.0], requires_grad=True)
        >>> opt = SwarmOfOptimizers([w], lambda p: RandomWalk(p, lr=0.3, adapt=1.5), n=4, seed=0)
        >>> for _ in range(60):
        ...     loss = opt.step(lambda: ((w - 1.0) ** 2).sum())
        >>> float(loss) < 1e-3
        True
    """

    forwards_group_options = True  # other group keys (e.g. ``lr``) go to the member optimizers

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        optimizers_factory: OptimizerSpec,
        n: int = 4,
        *,
        patience: int = 10,
        gravity: float = 0.0,
        init_std: float = 0.1,
        init: InitSpec = "perturb",
        state_crossover: str = "none",
        mutate: bool | Mapping[str, float] | None = None,
        reset_state: bool | Iterable[str] = False,
        size_schedule: SizeSchedule = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        executor: Any = None,
    ) -> None:
        self.executor = check_executor(executor, type(self).__name__)
        check_spec(optimizers_factory, owner=type(self).__name__, what="optimizers_factory", allow_constructed=False)
        if optimizers_factory is None:
            raise TypeError(
                f"{type(self).__name__}: optimizers_factory expected an optimizer factory, "
                "e.g. `lambda p: torch.optim.Adam(p, lr=1e-2)`; got None"
            )
        self.optimizers_factory = optimizers_factory
        self.n = check_int(n, "n", type(self).__name__, minimum=2)
        self.patience = check_int(patience, "patience", type(self).__name__)
        self.gravity = check_real(gravity, "gravity", type(self).__name__, low_open=False, high=1.0, high_open=False)
        self.init_std = check_positive(init_std, "init_std", type(self).__name__)
        self._init = resolve_init(init, type(self).__name__)
        self.init = init
        self.reset_state = check_reset(reset_state, state_crossover, type(self).__name__)
        self.state_crossover = state_crossover
        if state_crossover not in STATE_CROSSOVERS:
            raise ValueError(
                f"{type(self).__name__}: state_crossover expected one of {STATE_CROSSOVERS}, got {state_crossover!r}"
            )
        if self.state_crossover == "none" and isinstance(self.reset_state, tuple):
            warn_ignored("reset_state", 'with state_crossover="none" children start with empty state anyway')
        self.size_schedule = size_schedule
        self._schedule = (
            None
            if size_schedule is None
            else resolve_size_schedule(size_schedule, self.n, "n", type(self).__name__, minimum=2)
        )
        self._user_closure: Callable[..., Any] | None = None
        self._member_best = math.inf
        super().__init__(params, {"bounds": bounds}, seed=seed, generator=generator)
        self._init.check(self._space(), type(self).__name__)
        self.members: list[torch.optim.Optimizer] = [self._make_member() for _ in range(self._size(0))]
        self.mutate = check_mutate(mutate, self.members[0].param_groups, type(self).__name__)
        self._initial: list[dict[Any, Any] | None] = [None] * len(self.members)  # per slot, with reset_state

    # ------------------------------------------------------------------ members
    def _size(self, step: int) -> int:
        if self._schedule is not None:
            return self._schedule(step)
        return check_int(self.n, "n", type(self).__name__, minimum=2)

    def _make_member(self, draw: bool = True) -> torch.optim.Optimizer:
        """A new member optimizer over the swarm's tensors (groups forwarded without ``bounds``).

        torch's CPU generator is seeded from the swarm's own while the factory runs (and restored
        after), so members built without a seed are reproducible. ``draw=False`` (a member whose
        state is loaded next) seeds it with 0 and leaves the swarm's generator alone.
        """
        groups = forward_groups(self.param_groups, ["bounds"])
        seed = int(torch.randint(0, 2**62, (1,), generator=self.rng.get("cpu"))) if draw else 0
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return build_optimizer(
                self.optimizers_factory, groups, owner=type(self).__name__, what="optimizers_factory", closure_ok=True
            )

    def _extra_state(self) -> dict[str, Any]:
        """The swarm's state, with every member optimizer's own ``state_dict`` and the saved initial states."""
        return {**super()._extra_state(), "members": [m.state_dict() for m in self.members], "initial": self._initial}

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        """Restore the members (as many as were saved) and check the positions against them."""
        saved, initial = st.pop("members", None), st.pop("initial", None)
        count = len(saved) if saved is not None else len(self.members)
        check_saved_shape(st, "positions", (count, space.n))
        if saved is not None:
            if count < 2:
                raise ValueError(f"state_dict: it holds {count} member optimizers, a swarm needs at least 2")
            self.members += [self._make_member(draw=False) for _ in range(count - len(self.members))]
            del self.members[count:]
            for m, s in zip(self.members, saved):
                m.load_state_dict(s)
        ok = isinstance(initial, list) and len(initial) == count
        self._initial = list(initial) if ok else [None] * count

    # ------------------------------------------------------------------ steps
    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        if "positions" in st:
            return
        ours = [id(p) for g in self.param_groups for p in g["params"]]
        for i, m in enumerate(self.members):  # param groups were added: members need the new tensors
            if [id(p) for g in m.param_groups for p in g["params"]] != ours:
                self.members[i] = self._make_member()
        self.members += [self._make_member() for _ in range(self._size(st["steps"]) - len(self.members))]
        self._initial = [None] * len(self.members)
        gen = self._generator(space)
        count = len(self.members)
        X = space.project(draw_population(self._init, space, x, count, gen, self.init_std, type(self).__name__))
        X[0] = x
        st.update(
            positions=X,
            fitness=torch.full((len(self.members),), math.inf, dtype=torch.float64),
            behind=torch.zeros(len(self.members), dtype=torch.long),
        )

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        self._grow(space, st, self._size(st["steps"]))
        X, fitness = st["positions"], st["fitness"]
        if isinstance(self._batch, RemoteEvaluator):
            step_members_remotely(self, space, self._batch, X, fitness)
        else:
            closure = self._closure_for_members(space)
            for i, member in enumerate(self.members):
                space.write(X[i])
                self._member_best = math.inf
                member.step(closure)
                self._at_best = False  # the member moved the parameters after its last evaluation
                X[i] = space.project(space.read())
                fitness[i] = self._member_best
        for i, member in enumerate(self.members):
            if self.reset_state and self._initial[i] is None:
                saved = self._initial[i] = copy.deepcopy(member.state_dict()["state"])
                self._check_reset_names(saved)
        self._replace_laggards(space, st)
        if self.gravity > 0:
            best = X[int(torch.argmin(fitness))]
            X += self.gravity * (best - X)
            st["positions"] = space.project(X)

    def _remote_extra(self, space: FlatSpace) -> Any:
        """The members' factory and param groups, for the workers that step them."""
        return (
            self.optimizers_factory,
            member_groups(forward_groups(self.param_groups, ["bounds"]), space.flat.params),
        )

    def _closure_for_members(self, space: FlatSpace) -> Callable[..., Any]:
        user = self._user_closure
        assert user is not None, "only valid inside step()"

        def seen(loss: Any) -> None:
            f = self._record_run(space, loss_to_float(loss))
            self._member_best = min(self._member_best, f)

        return ClosureAdapter(user).observed(seen)

    def _replace_laggards(self, space: FlatSpace, st: dict[str, Any]) -> None:
        fitness, behind, X = st["fitness"], st["behind"], st["positions"]
        m = len(self.members)
        order = torch.argsort(fitness, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(m)
        lagging = rank >= (m + 1) // 2
        behind.copy_(torch.where(lagging, behind + 1, torch.zeros_like(behind)))
        a, b = int(order[0]), int(order[1])
        for i in torch.nonzero(behind >= self.patience).flatten().tolist():
            X[i], self.members[i] = self._child(space, X, a, b, self._initial[i])
            fitness[i] = math.inf
            behind[i] = 0

    def _check_reset_names(self, saved: dict[Any, Any]) -> None:
        """Refuse ``reset_state`` names that the member optimizer's first-step state does not have."""
        if not isinstance(self.reset_state, tuple):
            return
        have = sorted({k for entry in saved.values() for k in entry})
        missing = [k for k in self.reset_state if k not in have]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: reset_state names {missing}, entries the member optimizer's state does not "
                f"have after its first step (it has {have})"
            )

    def _grow(self, space: FlatSpace, st: dict[str, Any], size: int) -> None:
        """Add children of the two best members until there are ``size`` (never fewer members)."""
        if size <= len(self.members):
            return
        X = st["positions"]
        order = torch.argsort(st["fitness"], stable=True)
        a, b = int(order[0]), int(order[1])
        born = [self._child(space, X, a, b, None) for _ in range(size - len(self.members))]
        self.members += [member for _, member in born]
        self._initial += [None] * len(born)
        k = len(born)
        st.update(
            positions=torch.cat([X, torch.stack([x for x, _ in born])]),
            fitness=torch.cat([st["fitness"], torch.full((k,), math.inf, dtype=torch.float64)]),
            behind=torch.cat([st["behind"], torch.zeros(k, dtype=torch.long)]),
        )

    def _child(
        self, space: FlatSpace, X: torch.Tensor, a: int, b: int, initial: dict[Any, Any] | None
    ) -> tuple[torch.Tensor, torch.optim.Optimizer]:
        """A child of members ``a`` (the better) and ``b``: position and optimizer (see the class docstring).

        ``initial`` is the saved initial state of the slot it fills (``None``: a new slot, nothing to reset).
        """
        gen = self._generator(space)
        mask = torch.rand(space.n, generator=gen, dtype=space.dtype, device=space.device) < 0.5
        differ = torch.nonzero(X[a] != X[b]).flatten()
        if differ.numel() > 1 and bool(mask[differ].all() | ~mask[differ].any()):  # a copy of one parent
            j = int(differ[int(torch.randint(differ.numel(), (1,), generator=gen, device=space.device))])
            mask[j] = ~mask[j]
        x = torch.where(mask, X[a], X[b])
        child = self._make_member()
        if self.state_crossover == "none" and not self.mutate and self.reset_state is not True:
            return x, child
        own, gen = child.state_dict(), self.rng.get("cpu")
        how = "none" if self.reset_state is True else self.state_crossover
        sd = cross_state(self.members[a].state_dict(), self.members[b].state_dict(), how, gen)
        if self.reset_state is not False and initial is not None:
            keys = None if self.reset_state is True else self.reset_state
            sd["state"] = reset_entries(sd["state"], initial, keys)
        sd["param_groups"] = mutate_groups(sd["param_groups"], self.mutate, gen) if self.mutate else own["param_groups"]
        child.load_state_dict({**own, **sd})  # own: the child's "torchzero_bridge" entry, if any
        return x, child

    def step(self, closure: Callable[..., Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One step of every member optimizer; the parameters end at the best point seen.

        Args:
            closure: re-evaluates the model and returns the loss; it must run ``backward``
                when a gradient-based member asks for it.

        Returns:
            The loss at the best point seen, as a 0-dim float64 tensor.
        """
        self._user_closure = closure
        try:
            return super().step(closure)
        finally:
            self._user_closure = None
