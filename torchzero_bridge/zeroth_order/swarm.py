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

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from torchzero_bridge._checks import check_int, check_positive, check_real
from torchzero_bridge.core.closure import ClosureAdapter, loss_to_float
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.core.remote import RemoteEvaluator, check_executor
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer
from torchzero_bridge.zeroth_order.initializers import InitSpec, draw_population, resolve_init
from torchzero_bridge.zeroth_order.inner import OptimizerSpec, build_optimizer, check_spec, forward_groups
from torchzero_bridge.zeroth_order.swarm_remote import MemberResult, member_groups, run_member_step

__all__ = ["SwarmOfOptimizers"]


class SwarmOfOptimizers(DerivativeFreeOptimizer):
    """A population of parameter copies, each moved by its own torch optimizer.

    Member ``i`` owns a copy of the parameters and an optimizer made by
    ``optimizers_factory(param_groups)`` over the model's own parameter tensors (gradient-based,
    e.g. ``torch.optim.Adam``, or gradient-free, e.g. another optimizer of this package).
    Each swarm step loads every member's copy into the parameters, runs one ``step`` of its
    optimizer with the closure, and stores where it left them; the member's fitness is the
    lowest loss its optimizer saw during that step. A member ranked in the worse half for
    ``patience`` consecutive steps is replaced by a uniform crossover of the two best members
    (with a fresh optimizer). With ``gravity > 0`` every member then moves that fraction of
    the way toward the best member. The model's parameters end at the best point seen.

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
        n: number of members.
        patience: steps in the worse half before a member is replaced.
        gravity: fraction in ``[0, 1]`` of the way each member moves toward the best member per step.
        init_std: spread of the initial members around the start.
        init: how members start: ``"perturb"`` (default), ``"fitted"``, a
            :class:`~torchzero_bridge.zeroth_order.ModuleInit`, a module, or ``f(count, generator)``
            returning a ``(count, n)`` tensor (see :mod:`~torchzero_bridge.zeroth_order.initializers`).
            Replaced members are crossovers, not initializer draws.
        bounds: per-group ``(lo, hi)``; member positions are clipped to them.
        seed: seed of the swarm's random generator (initial spread and crossovers).
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
            unknown ``init``.

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
        self._user_closure: Callable[..., Any] | None = None
        self._member_best = math.inf
        super().__init__(params, {"bounds": bounds}, seed=seed, generator=generator)
        self._init.check(self._space(), type(self).__name__)
        self.members: list[torch.optim.Optimizer] = [self._make_member() for _ in range(self.n)]

    # ------------------------------------------------------------------ members
    def _make_member(self) -> torch.optim.Optimizer:
        """A new member optimizer over the swarm's tensors (groups forwarded without ``bounds``).

        torch's CPU generator is seeded from the swarm's own while the factory runs (and restored
        after), so members built without a seed are reproducible.
        """
        groups = forward_groups(self.param_groups, ["bounds"])
        seed = int(torch.randint(0, 2**62, (1,), generator=self.rng.get("cpu")))
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return build_optimizer(
                self.optimizers_factory, groups, owner=type(self).__name__, what="optimizers_factory", closure_ok=True
            )

    def _extra_state(self) -> dict[str, Any]:
        """The swarm's state, with every member optimizer's own ``state_dict``."""
        return {**super()._extra_state(), "members": [m.state_dict() for m in self.members]}

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        pos = st.get("positions")
        if pos is not None and tuple(pos.shape) != (self.n, space.n):
            raise ValueError(f"state_dict: saved positions have shape {tuple(pos.shape)}, expected {(self.n, space.n)}")
        saved = st.pop("members", None)
        if saved is not None:
            if len(saved) != self.n:
                raise ValueError(f"state_dict: it holds {len(saved)} member optimizers, this swarm has n={self.n}")
            for m, s in zip(self.members, saved):
                m.load_state_dict(s)

    # ------------------------------------------------------------------ steps
    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        if "positions" in st:
            return
        ours = [id(p) for g in self.param_groups for p in g["params"]]
        for i, m in enumerate(self.members):  # param groups were added: members need the new tensors
            if [id(p) for g in m.param_groups for p in g["params"]] != ours:
                self.members[i] = self._make_member()
        gen = self._generator(space)
        X = space.project(draw_population(self._init, space, x, self.n, gen, self.init_std, type(self).__name__))
        X[0] = x
        st.update(
            positions=X,
            fitness=torch.full((self.n,), math.inf, dtype=torch.float64),
            behind=torch.zeros(self.n, dtype=torch.long),
        )

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        X, fitness = st["positions"], st["fitness"]
        if isinstance(self._batch, RemoteEvaluator):
            self._step_members_remotely(space, self._batch, X, fitness)
        else:
            closure = self._closure_for_members(space)
            for i, member in enumerate(self.members):
                space.write(X[i])
                self._member_best = math.inf
                member.step(closure)
                self._at_best = False  # the member moved the parameters after its last evaluation
                X[i] = space.project(space.read())
                fitness[i] = self._member_best
        self._replace_laggards(space, st)
        if self.gravity > 0:
            best = X[int(torch.argmin(fitness))]
            X += self.gravity * (best - X)
            st["positions"] = space.project(X)

    def _population_source(self, closure: Callable[..., Any], space: FlatSpace) -> Any:
        """With an executor: a RemoteEvaluator shipping the closure and the members' factory."""
        if self.executor is None:
            return None  # members step with the closure; populations are not evaluated here
        if self._remote is None or self._remote.source is not closure:
            groups = member_groups(forward_groups(self.param_groups, ["bounds"]), space.flat.params)
            extra = (self.optimizers_factory, groups)
            self._remote = RemoteEvaluator(self.executor, closure, space.flat, extra=extra)
        return self._remote

    def _step_members_remotely(
        self, space: FlatSpace, remote: RemoteEvaluator, X: torch.Tensor, fitness: torch.Tensor
    ) -> None:
        """Every member's step as one task; evaluations recorded in member order, as serially."""
        starts = X.detach().to("cpu", torch.float64).numpy()
        tasks = [(starts[i].copy(), m.state_dict()) for i, m in enumerate(self.members)]
        results: list[MemberResult] = remote.run_tasks(run_member_step, tasks)
        for i, (end, state, points, losses) in enumerate(results):
            self._member_best = math.inf
            for point, f in zip(points, losses):
                at = torch.as_tensor(point).to(device=space.device, dtype=space.dtype)
                self._member_best = min(self._member_best, self._record_point(space, at, f))
            self.members[i].load_state_dict(state)
            X[i] = space.project(torch.as_tensor(end).to(device=space.device, dtype=space.dtype))
            fitness[i] = self._member_best
        self._at_best = False

    def _closure_for_members(self, space: FlatSpace) -> Callable[..., Any]:
        user = self._user_closure
        assert user is not None, "only valid inside step()"

        def seen(loss: Any) -> None:
            f = self._record_run(space, loss_to_float(loss))
            self._member_best = min(self._member_best, f)

        return ClosureAdapter(user).observed(seen)

    def _replace_laggards(self, space: FlatSpace, st: dict[str, Any]) -> None:
        fitness, behind, X = st["fitness"], st["behind"], st["positions"]
        order = torch.argsort(fitness, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(self.n)
        lagging = rank >= (self.n + 1) // 2
        behind.copy_(torch.where(lagging, behind + 1, torch.zeros_like(behind)))
        a, b = X[int(order[0])], X[int(order[1])]
        gen = self._generator(space)
        for i in torch.nonzero(behind >= self.patience).flatten().tolist():
            mask = torch.rand(space.n, generator=gen, dtype=space.dtype, device=space.device) < 0.5
            X[i] = torch.where(mask, a, b)
            fitness[i] = math.inf
            behind[i] = 0
            self.members[i] = self._make_member()

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
