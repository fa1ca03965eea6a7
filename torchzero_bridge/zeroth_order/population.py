"""Population methods: particle swarm and a self-adaptive evolution strategy.

Each step evaluates a whole population, in one vectorized call when the closure is a
:class:`~torchzero_bridge.BatchObjective` (one closure run per member otherwise); the
parameters then hold the best point seen.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import ParticleSwarm
    >>> w = torch.zeros(2, requires_grad=True)
    >>> opt = ParticleSwarm([w], n_particles=16, bounds=(-5.0, 5.0), seed=0)
    >>> for _ in range(60):
    ...     loss = opt.step(lambda: ((w - 1.0) ** 2).sum())
    >>> float(loss) < 1e-4
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from torchzero_bridge._checks import check_int, check_positive
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.core.remote import check_executor
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer, warn_ignored
from torchzero_bridge.zeroth_order.initializers import InitSpec, PerturbInit, draw_population, resolve_init
from torchzero_bridge.zeroth_order.schedules import SizeSchedule, resolve_size_schedule
from torchzero_bridge.zeroth_order.search import uniform_in_bounds
from torchzero_bridge.zeroth_order.space import check_saved_shape

__all__ = ["RECOMBINATIONS", "EvolutionStrategy", "ParticleSwarm"]

RECOMBINATIONS = ("intermediate", "none")


def _check_rows(st: dict[str, Any], key: str, rows: int | None, n: int) -> None:
    """A saved ``(rows, n)`` tensor (``rows=None``: any count of at least 2, the same for every key checked)."""
    t = st.get(key)
    if t is None:
        return
    if rows is None:
        ok = t.ndim == 2 and t.shape[1] == n and t.shape[0] >= 2
        rows = t.shape[0] if ok else -1
    check_saved_shape(st, key, (rows, n))


class ParticleSwarm(DerivativeFreeOptimizer):
    """Global-best particle swarm optimization.

    Particles start where ``init`` puts them (default ``"perturb"``: uniformly inside finite bounds,
    elsewhere at ``start + init_std * N(0, 1)``; any other initializer draws every entry, clipped to
    the bounds); particle 0 starts at the current parameters. Each step after the first updates every
    particle with ``v <- inertia v + cognitive r1 (personal_best - x) + social r2 (global_best - x)``
    (``r1, r2 ~ U(0, 1)`` per entry), clips ``v`` to ``+-max_velocity``, moves ``x <- x + v``,
    clips ``x`` to the bounds (zeroing the clipped velocity entries) and evaluates the swarm.
    The first step only evaluates the initial swarm.

    The swarm can grow (``size_schedule=``, or a larger ``n_particles`` set between steps; it never
    shrinks): at a step where the size rises, the existing particles move as above and the added
    ones start as the initial swarm did, drawn by ``init`` around the incumbent instead of the start
    point (by default uniform inside finite bounds, elsewhere ``incumbent + init_std * N(0, 1)``),
    with zero velocity and their first position as personal best; old and new are evaluated in one call.

    Args:
        params: iterable of tensors or of param-group dicts.
        n_particles: swarm size (at the first step, with ``size_schedule``).
        inertia: velocity damping ``w``.
        cognitive: pull ``c1`` toward each particle's own best.
        social: pull ``c2`` toward the swarm's best.
        init_std: spread of the initial swarm along unbounded entries (default 1); with
            ``init="fitted"`` the spread of tensors that have nothing to fit.
        init: how particles start: ``"perturb"`` (default), ``"fitted"``, a
            :class:`~torchzero_bridge.zeroth_order.ModuleInit`, a module, or ``f(count, generator)``
            returning a ``(count, n)`` tensor (see :mod:`~torchzero_bridge.zeroth_order.initializers`).
        max_velocity: per-entry speed limit (``None``: a fifth of the bounded width, none
            on unbounded entries).
        size_schedule: the swarm size per step: ``"linear"``, ``"geometric"`` or a callable of the
            0-based step index (see :mod:`~torchzero_bridge.zeroth_order.schedules`); ``None``: ``n_particles``.
        bounds: per-group ``(lo, hi)``.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        executor: a ``concurrent.futures.Executor`` or a ``dask.distributed.Client`` that
            evaluates each population in chunks on its workers (same results as serially).
            The closure or ``BatchObjective`` is sent once, at its first step: pass a new one
            when the data it holds changes.

    Raises:
        ValueError: ``n_particles < 2``, negative coefficients, non-positive ``init_std``, unknown ``init``.
        TypeError: integer or boolean tensors, an ``init`` that is not an initializer.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import ParticleSwarm
        >>> a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
        >>> opt = ParticleSwarm([a, b], n_particles=10, init_std=2.0, seed=1)
        >>> for _ in range(80):
        ...     loss = opt.step(lambda: ((a - 1) ** 2).sum() + (b[0] + 2) ** 2)
        >>> float(loss) < 1e-4, opt.nfev
        (True, 800)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        n_particles: int = 20,
        inertia: float = 0.7298,
        cognitive: float = 1.49618,
        social: float = 1.49618,
        *,
        init_std: float | None = None,
        init: InitSpec = "perturb",
        max_velocity: float | None = None,
        size_schedule: SizeSchedule = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        executor: Any = None,
    ) -> None:
        self.executor = check_executor(executor, type(self).__name__)
        self.n_particles = check_int(n_particles, "n_particles", type(self).__name__, minimum=2)
        self.size_schedule = size_schedule
        self._schedule = (
            None
            if size_schedule is None
            else resolve_size_schedule(size_schedule, self.n_particles, "n_particles", type(self).__name__, minimum=2)
        )
        self.inertia = check_positive(inertia, "inertia", type(self).__name__, allow_zero=True)
        self.cognitive = check_positive(cognitive, "cognitive", type(self).__name__, allow_zero=True)
        self.social = check_positive(social, "social", type(self).__name__, allow_zero=True)
        self.init_std = 1.0 if init_std is None else check_positive(init_std, "init_std", type(self).__name__)
        self.max_velocity = (
            None if max_velocity is None else check_positive(max_velocity, "max_velocity", type(self).__name__)
        )
        self._init = resolve_init(init, type(self).__name__)
        self.init = init
        super().__init__(params, {"bounds": bounds}, seed=seed, generator=generator)
        self._init.check(self._space(), type(self).__name__)
        if init_std is not None and not self._init.uses_scale:
            warn_ignored("init_std", f"init={self._init!r} does not use it")
        elif init_std is not None and isinstance(self._init, PerturbInit) and bool(self._space().bounded.all()):
            warn_ignored("init_std", "every entry has finite bounds, so the swarm starts uniformly inside them")

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        rows = st["positions"].shape[0] if isinstance(st.get("positions"), torch.Tensor) else None
        for key in ("positions", "velocities", "pbest"):
            _check_rows(st, key, rows, space.n)

    def _size(self, step: int) -> int:
        if self._schedule is not None:
            return self._schedule(step)
        return check_int(self.n_particles, "n_particles", type(self).__name__, minimum=2)

    def _spawn(self, space: FlatSpace, center: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` particles drawn by ``init`` around ``center`` (``"perturb"``: uniform in finite bounds)."""
        gen = self._generator(space)
        X = draw_population(self._init, space, center, count, gen, self.init_std, type(self).__name__)
        if isinstance(self._init, PerturbInit):
            X = torch.where(space.bounded, uniform_in_bounds(space, count, gen), X)
        return space.project(X)

    def _vmax(self, space: FlatSpace) -> torch.Tensor:
        if self.max_velocity is not None:
            return torch.full((space.n,), self.max_velocity, dtype=space.dtype, device=space.device)
        return torch.where(space.bounded, (space.hi - space.lo) / 5.0, torch.full_like(space.lo, math.inf))

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        gen = self._generator(space)
        size = self._size(st["steps"])
        if "positions" not in st:
            m = size
            start = st["best_x"]
            X = self._spawn(space, start, m)
            X[0] = start
            f = torch.empty(m, dtype=torch.float64)
            f[0] = st["best_f"]
            f[1:] = self._evaluate_many(space, X[1:])
            st.update(positions=X, velocities=torch.zeros_like(X), pbest=X.clone(), pbest_f=f)
            return
        X, V = st["positions"], st["velocities"]
        P, pf = st["pbest"], st["pbest_f"]
        m, n = X.shape
        g = P[int(torch.argmin(pf))]
        if pf.min() > st["best_f"]:  # the incumbent was set from outside: follow it
            g = st["best_x"]
        r1 = torch.rand((m, n), generator=gen, dtype=space.dtype, device=space.device)
        r2 = torch.rand((m, n), generator=gen, dtype=space.dtype, device=space.device)
        V = self.inertia * V + self.cognitive * r1 * (P - X) + self.social * r2 * (g - X)
        vmax = self._vmax(space)
        V = torch.maximum(torch.minimum(V, vmax), -vmax)
        moved = X + V
        X = space.project(moved)
        clipped = (moved < space.lo) | (moved > space.hi)
        V = torch.where(clipped, torch.zeros_like(V), V)
        new = self._spawn(space, g, size - m) if size > m else X[:0]
        f_all = self._evaluate_many(space, torch.cat([X, new]) if new.shape[0] else X)
        f, f_new = f_all[:m], f_all[m:]
        better = f < pf
        P = torch.where(better.to(space.device)[:, None], X, P)
        st.update(
            positions=torch.cat([X, new]),
            velocities=torch.cat([V, torch.zeros_like(new)]),
            pbest=torch.cat([P, new]),
            pbest_f=torch.cat([torch.where(better, f, pf), f_new]),
        )


class EvolutionStrategy(DerivativeFreeOptimizer):
    """(mu, lambda) or (mu + lambda) evolution strategy with a self-adapted step size.

    Every individual carries its own step size ``sigma`` (relative to the per-group ``lr``).
    Each step creates ``n_offspring`` children: with ``recombination="intermediate"`` from the
    mean of the parents and the geometric mean of their step sizes, with ``"none"`` from a
    uniformly chosen parent. A child's step size is ``sigma * exp(tau * N(0, 1))`` and its
    position ``parent + sigma * lr * N(0, I)`` (integer entries rounded). The best
    ``n_parents`` children (or, with ``plus=True``, of parents and children) become the parents.

    With ``init="perturb"`` (default) the parents start at the current parameters, so the first
    children are the start plus the mutation. Any other ``init`` replaces the first brood: the
    first step's ``n_offspring`` children are drawn by the initializer (spread: the per-group
    ``lr``) with child 0 at the current parameters (its loss is known, so the step costs
    ``n_offspring - 1`` evaluations), all with step size 1, and selection proceeds as above.
    Later broods are always mutations (a ``size_schedule`` only makes them larger).

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: per-group initial mutation scale.
        n_parents: ``mu``.
        n_offspring: ``lambda`` (at least ``n_parents`` for comma selection).
        plus: ``(mu + lambda)`` selection (parents survive) instead of ``(mu, lambda)``.
        recombination: ``"intermediate"`` (default) or ``"none"``.
        tau: learning rate of the step sizes (default ``1 / sqrt(2 n)``).
        init: how the first brood is drawn: ``"perturb"`` (default: mutations of the start),
            ``"fitted"``, a :class:`~torchzero_bridge.zeroth_order.ModuleInit`, a module, or
            ``f(count, generator)`` returning a ``(count, n)`` tensor (see
            :mod:`~torchzero_bridge.zeroth_order.initializers`).
        size_schedule: the number of offspring per step: ``"linear"``, ``"geometric"`` or a callable
            of the 0-based step index (see :mod:`~torchzero_bridge.zeroth_order.schedules`);
            ``None``: ``n_offspring``. Offspring are drawn afresh every step, so a larger brood is
            simply more children of the same parents (at least ``n_parents`` with comma selection).
        bounds: per-group ``(lo, hi)``.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        executor: a ``concurrent.futures.Executor`` or a ``dask.distributed.Client`` that
            evaluates each population in chunks on its workers (same results as serially).
            The closure or ``BatchObjective`` is sent once, at its first step: pass a new one
            when the data it holds changes.

    Raises:
        ValueError: non-positive sizes or ``lr``, ``n_offspring < n_parents`` with comma
            selection, unknown ``recombination`` or ``init``.
        TypeError: an ``init`` that is not an initializer.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import EvolutionStrategy
        >>> w = torch.tensor([3.0, -2.0, 1.0], requires_grad=True)
        >>> opt = EvolutionStrategy([w], lr=1.0, seed=0)
        >>> for _ in range(100):
        ...     loss = opt.step(lambda: (w ** 2).sum())
        >>> float(loss) < 1e-6
        True
    """

    allow_integer: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        n_parents: int = 4,
        n_offspring: int = 16,
        *,
        plus: bool = False,
        recombination: str = "intermediate",
        tau: float | None = None,
        init: InitSpec = "perturb",
        size_schedule: SizeSchedule = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        executor: Any = None,
    ) -> None:
        self.executor = check_executor(executor, type(self).__name__)
        self._init = resolve_init(init, type(self).__name__)
        self.init = init
        self.n_parents = check_int(n_parents, "n_parents", type(self).__name__)
        self.n_offspring = check_int(n_offspring, "n_offspring", type(self).__name__)
        if not isinstance(plus, bool):
            raise TypeError(f"{type(self).__name__}: plus expected True or False, got {plus!r}")
        if not plus and self.n_offspring < self.n_parents:
            raise ValueError(
                f"{type(self).__name__}: n_offspring expected at least n_parents={self.n_parents} for (mu, lambda) "
                f"selection, got {n_offspring}; use plus=True or more offspring"
            )
        if recombination not in RECOMBINATIONS:
            raise ValueError(
                f"{type(self).__name__}: recombination expected one of {RECOMBINATIONS}, got {recombination!r}"
            )
        self.plus = plus
        self.recombination = recombination
        self.tau = None if tau is None else check_positive(tau, "tau", type(self).__name__)
        self.size_schedule = size_schedule
        self._schedule = (
            None
            if size_schedule is None
            else resolve_size_schedule(
                size_schedule,
                self.n_offspring,
                "n_offspring",
                type(self).__name__,
                minimum=1 if plus else self.n_parents,
            )
        )
        super().__init__(params, {"lr": lr, "bounds": bounds}, seed=seed, generator=generator)
        self._init.check(self._space(), type(self).__name__)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        check_positive(group["lr"], f"lr ({where})", type(self).__name__)

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        _check_rows(st, "parents", self.n_parents, space.n)

    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        if "parents" not in st:
            mu = self.n_parents
            st.update(
                parents=x.repeat(mu, 1),
                sigmas=torch.ones(mu, dtype=space.dtype, device=space.device),
                fitness=torch.full((mu,), f, dtype=torch.float64),
            )
            if not isinstance(self._init, PerturbInit):
                st["first_brood"] = True  # drawn by the initializer at the next step

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        gen = self._generator(space)
        lam, n = self.n_offspring if self._schedule is None else self._schedule(st["steps"]), space.n
        tau = self.tau if self.tau is not None else 1.0 / math.sqrt(2.0 * n)
        P, S = st["parents"], st["sigmas"]
        lr = space.group_vector(self.param_groups, "lr")
        if st.get("first_brood", False):  # kept until the brood is evaluated: a failed step draws it again
            X = space.project(draw_population(self._init, space, st["best_x"], lam, gen, lr, type(self).__name__))
            X[0] = st["best_x"]
            sigma = torch.ones(lam, dtype=space.dtype, device=space.device)
            f = torch.cat([torch.tensor([st["best_f"]], dtype=torch.float64), self._evaluate_many(space, X[1:])])
            del st["first_brood"]
            self._select(space, st, X, sigma, f)
            return
        if self.recombination == "intermediate":
            base = P.mean(0).expand(lam, n)
            base_sigma = torch.exp(torch.log(S).mean()).expand(lam)
        else:
            pick = torch.randint(P.shape[0], (lam,), generator=gen, device=space.device)
            base, base_sigma = P[pick], S[pick]
        sigma = base_sigma * torch.exp(tau * torch.randn(lam, generator=gen, dtype=space.dtype, device=space.device))
        z = torch.randn((lam, n), generator=gen, dtype=space.dtype, device=space.device)
        X = space.project(base + sigma[:, None] * lr * z)
        self._select(space, st, X, sigma, self._evaluate_many(space, X))

    def _select(
        self, space: FlatSpace, st: dict[str, Any], X: torch.Tensor, sigma: torch.Tensor, f: torch.Tensor
    ) -> None:
        """The best ``n_parents`` children (with ``plus=True``: of parents and children) become the parents."""
        P, S = st["parents"], st["sigmas"]
        if self.plus:
            X, sigma, f = torch.cat([P, X]), torch.cat([S, sigma]), torch.cat([st["fitness"], f])
        order = torch.argsort(f, stable=True)[: self.n_parents]
        st.update(parents=X[order.to(space.device)], sigmas=sigma[order.to(space.device)], fitness=f[order])
