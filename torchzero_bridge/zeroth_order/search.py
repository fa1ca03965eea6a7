"""Search methods: random search, shrinking random search, coordinate search (and grid search, from ``grid``).

All four accept integer and boolean tensors (their values stay integral) and evaluate the
points of one step in a single vectorized call when the closure is a
:class:`~torchzero_bridge.BatchObjective`.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import GridSearch
    >>> w = torch.zeros(2, requires_grad=True)
    >>> opt = GridSearch([w], bounds=(-1.0, 1.0), step=0.5, batch_size=25)
    >>> loss = opt.step(lambda: ((w - 0.5) ** 2).sum())
    >>> w.tolist(), float(loss)
    ([0.5, 0.5], 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from torchzero_bridge._checks import check_int, check_positive, check_real
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer, warn_ignored
from torchzero_bridge.zeroth_order.grid import GridSearch

__all__ = ["GridSearch", "RandomSearch", "SequentialSearch", "ShrinkingRandomSearch", "uniform_in_bounds"]

Sampler = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
SAMPLERS = ("auto", "uniform", "normal")


def uniform_in_bounds(space: FlatSpace, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` points drawn uniformly inside the bounds (uniform over the integers for integer entries).

    Entries without finite bounds are returned as zeros; callers fill them another way.

    Example:
        >>> import torch
        >>> w = torch.zeros(3, requires_grad=True)
        >>> space = FlatSpace([{"params": [w], "bounds": (0.0, 1.0)}], allow_integer=False, owner="doc")
        >>> X = uniform_in_bounds(space, 4, torch.Generator().manual_seed(0))
        >>> X.shape, bool(((X >= 0) & (X <= 1)).all())
        (torch.Size([4, 3]), True)
    """
    u = torch.rand((count, space.n), generator=generator, dtype=space.dtype, device=space.device)
    lo = torch.where(space.bounded, space.lo, torch.zeros_like(space.lo))
    width = torch.where(space.bounded, space.hi - space.lo, torch.zeros_like(space.lo))
    width = torch.where(space.integer & space.bounded, width + 1.0, width)
    X = lo + u * width
    return torch.where(space.integer, torch.minimum(torch.floor(X), space.hi), X)


def _check_samples(n_samples: Any, owner: str) -> int:
    return check_int(n_samples, "n_samples", owner)


class RandomSearch(DerivativeFreeOptimizer):
    """Pure random search: sample fresh parameters, keep them when the loss is not worse.

    Each step draws ``n_samples`` points independently of the current ones and keeps the
    best of them if its loss is not worse than the incumbent's (ties move to the new point).

    Args:
        params: iterable of tensors or of param-group dicts.
        sampler: ``"auto"`` (default: uniform inside finite per-group bounds, normal where
            unbounded), ``"uniform"`` (needs finite bounds for every entry), ``"normal"``
            (``N(0, std**2)``, clipped to any bounds), or a callable
            ``sampler(param, generator) -> tensor shaped like param``.
        n_samples: points per step (evaluated in one call with a ``BatchObjective``).
        std: per-group standard deviation of the normal sampler (default 1).
        bounds: per-group ``(lo, hi)``; scalars, tensors shaped like each parameter, or ``None``.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        stochastic: minibatch mode: every step first re-evaluates the incumbent on the closure's
            current batch, and the samples must beat that value (one more closure run per step).

    Raises:
        ValueError: unknown ``sampler``, ``"uniform"`` without finite bounds, non-positive
            ``std`` or ``n_samples``.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import RandomSearch
        >>> k = torch.zeros(2, dtype=torch.int64)
        >>> opt = RandomSearch([k], bounds=(-3, 3), n_samples=49, seed=0)
        >>> for _ in range(5):
        ...     loss = opt.step(lambda: float(((k - 2) ** 2).sum()))
        >>> k.tolist(), float(loss)
        ([2, 2], 0.0)
    """

    allow_integer: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        sampler: str | Sampler = "auto",
        *,
        n_samples: int = 1,
        std: float | None = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        stochastic: bool = False,
    ) -> None:
        if not callable(sampler) and sampler not in SAMPLERS:
            raise ValueError(
                f"{type(self).__name__}: sampler expected one of {SAMPLERS} or a callable(param, generator), "
                f"got {sampler!r}"
            )
        self.sampler = sampler
        self.n_samples = _check_samples(n_samples, type(self).__name__)
        defaults = {"std": 1.0 if std is None else std, "bounds": bounds}
        super().__init__(params, defaults, seed=seed, generator=generator, stochastic=stochastic)
        space = self._space()
        if sampler == "uniform" and not bool(space.bounded.all()):
            k = int(torch.nonzero(~space.bounded)[0])
            raise ValueError(
                f"sampler='uniform' needs finite bounds=(lo, hi) for every entry; {space.flat.locate(k)} has none"
            )
        normal_used = sampler == "normal" or (sampler == "auto" and not bool(space.bounded.all()))
        if std is not None and not normal_used:
            warn_ignored("std", "only the normal sampler uses it (every entry is sampled another way)")

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        check_positive(group["std"], f"std ({where})", type(self).__name__)

    def _sample(self, space: FlatSpace) -> torch.Tensor:
        gen = self._generator(space)
        m = self.n_samples
        if callable(self.sampler):
            return torch.stack([self._call_sampler(space, gen) for _ in range(m)])
        bounded = bool(space.bounded.all())
        if self.sampler == "uniform" or (self.sampler == "auto" and bounded):
            return uniform_in_bounds(space, m, gen)
        std = space.group_vector(self.param_groups, "std")
        normal = torch.randn((m, space.n), generator=gen, dtype=space.dtype, device=space.device) * std
        if self.sampler == "normal" or not bool(space.bounded.any()):
            return normal
        return torch.where(space.bounded, uniform_in_bounds(space, m, gen), normal)

    def _call_sampler(self, space: FlatSpace, gen: torch.Generator) -> torch.Tensor:
        pieces = []
        for i, p in enumerate(space.flat.params):
            out = self.sampler(p.detach(), gen)  # type: ignore[operator]
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(p.shape):
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"{type(self).__name__}: sampler expected a tensor shaped like {space.flat.name(i)}, got {got}"
                )
            if out.is_complex():
                out = torch.view_as_real(out)
            pieces.append(out.detach().reshape(-1).to(device=space.device, dtype=space.dtype))
        return torch.cat(pieces)

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        X = space.project(self._sample(space))
        self._evaluate_many(space, X, ties=True)


class ShrinkingRandomSearch(DerivativeFreeOptimizer):
    """Random search around the best point with a scale that shrinks over ``nsteps`` steps.

    Step ``t`` samples ``best + lr * s_t * N(0, I)`` with ``s_t = final_scale ** min(t / nsteps, 1)``:
    the scale falls geometrically from ``lr`` to ``lr * final_scale`` over ``nsteps`` steps
    and stays there. A sample is kept when its loss is not worse than the incumbent's.

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: per-group initial sampling scale.
        nsteps: steps over which the scale shrinks.
        final_scale: scale reached after ``nsteps`` steps, relative to ``lr`` (in ``(0, 1]``).
        n_samples: points per step (evaluated in one call with a ``BatchObjective``).
        bounds: per-group ``(lo, hi)``.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        stochastic: minibatch mode: every step first re-evaluates the incumbent on the closure's
            current batch, and the samples must beat that value (one more closure run per step).

    Raises:
        ValueError: non-positive ``lr``, ``nsteps`` or ``n_samples``; ``final_scale`` outside ``(0, 1]``.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import ShrinkingRandomSearch
        >>> w = torch.tensor([1.0, -1.0], requires_grad=True)
        >>> opt = ShrinkingRandomSearch([w], lr=1.0, nsteps=300, seed=0)
        >>> for _ in range(300):
        ...     loss = opt.step(lambda: (w ** 2).sum())
        >>> float(loss) < 1e-3
        True
    """

    allow_integer: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        nsteps: int = 1000,
        *,
        final_scale: float = 1e-3,
        n_samples: int = 1,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        stochastic: bool = False,
    ) -> None:
        self.nsteps = check_int(nsteps, "nsteps", type(self).__name__)
        self.final_scale = check_real(final_scale, "final_scale", type(self).__name__, high=1.0, high_open=False)
        self.n_samples = _check_samples(n_samples, type(self).__name__)
        super().__init__(params, {"lr": lr, "bounds": bounds}, seed=seed, generator=generator, stochastic=stochastic)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        check_positive(group["lr"], f"lr ({where})", type(self).__name__)

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        scale = self.final_scale ** min(st["steps"] / self.nsteps, 1.0)
        lr = space.group_vector(self.param_groups, "lr") * scale
        gen = self._generator(space)
        z = torch.randn((self.n_samples, space.n), generator=gen, dtype=space.dtype, device=space.device)
        self._evaluate_many(space, space.project(st["best_x"] + lr * z), ties=True)


class SequentialSearch(DerivativeFreeOptimizer):
    """Coordinate search: each step sweeps one entry, keeping the best point found along it.

    Step ``t`` takes entry ``c`` (in flat order, cycling) and evaluates
    ``best + k * h_c * e_c`` for ``k = +-1, ..., +-points`` (clipped to the bounds,
    duplicates dropped; integers move by at least 1), where ``h_c = lr * scale_c``. Every
    entry keeps its own ``scale_c`` (starting at 1): multiplied by ``grow`` when its sweep
    improved the incumbent and by ``shrink`` when it did not.

    The search has converged when no entry can move to a lower loss: since the last
    improvement every entry's sweep failed at its smallest spacing (a float entry whose
    spacing no longer changes its value, an integer entry at spacing 1). It then sets
    ``converged``, warns once (:class:`~torchzero_bridge.errors.ConvergedWarning`) and later
    steps evaluate nothing, so stop on it: ``while opt.nfev < budget and not opt.converged``.
    Changing the parameters from outside restarts the search there.

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: per-group initial spacing of the sweep.
        bounds: per-group ``(lo, hi)`` (optional).
        points: points on each side of the incumbent per sweep.
        shrink: factor in ``(0, 1)`` applied to an entry's spacing after a sweep without improvement.
        grow: factor ``>= 1`` applied after a sweep that improved (1 keeps it).

    Raises:
        ValueError: non-positive ``lr`` or ``points``; ``shrink`` outside ``(0, 1)``; ``grow < 1``.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import SequentialSearch
        >>> w = torch.tensor([3.0, -2.0], requires_grad=True)
        >>> opt = SequentialSearch([w], lr=1.0)
        >>> for _ in range(20):
        ...     loss = opt.step(lambda: ((w - 1.0) ** 2).sum())
        >>> w.tolist()
        [1.0, 1.0]
    """

    allow_integer: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        bounds: Any = None,
        *,
        points: int = 1,
        shrink: float = 0.5,
        grow: float = 2.0,
    ) -> None:
        self.points = check_int(points, "points", type(self).__name__)
        self.shrink = check_real(shrink, "shrink", type(self).__name__, high=1.0)
        self.grow = check_real(grow, "grow", type(self).__name__, low=1.0, low_open=False)
        super().__init__(params, {"lr": lr, "bounds": bounds}, seed=0)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        check_positive(group["lr"], f"lr ({where})", type(self).__name__)

    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        st.setdefault("coordinate", 0)
        stuck = st.get("stuck")
        if st.get("scales") is None or (stuck is not None and bool(stuck.all())):  # fresh, or after converging
            st["scales"] = torch.ones(space.n, dtype=torch.float64)
        st["stuck"] = torch.zeros(space.n, dtype=torch.bool)

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        sc = st.get("scales")
        if sc is not None and sc.numel() != space.n:
            raise ValueError(f"state_dict: saved scales have {sc.numel()} entries, expected {space.n}")

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        c = st["coordinate"] % space.n
        st["coordinate"] = (c + 1) % space.n
        scales = st["scales"]
        h = float(space.group_vector(self.param_groups, "lr")[c]) * float(scales[c])
        if bool(space.integer[c]):
            h = max(1.0, round(h))
        ks = torch.arange(1, self.points + 1, dtype=space.dtype, device=space.device)
        offsets = torch.cat([-ks.flip(0), ks]) * h
        best, f0 = st["best_x"], st["best_f"]
        X = best.repeat(offsets.numel(), 1)
        X[:, c] += offsets
        X = space.project(X)
        X = X[X[:, c] != best[c]]
        if X.shape[0]:
            X = X[_first_unique(X[:, c])]
            self._evaluate_many(space, X)
        improved = st["best_f"] < f0
        scales[c] *= self.grow if improved else self.shrink
        stuck = st.setdefault("stuck", torch.zeros(space.n, dtype=torch.bool))
        if improved:
            stuck.zero_()
        else:  # no point along c, or the nearest integer neighbours were no better
            stuck[c] = X.shape[0] == 0 or (bool(space.integer[c]) and h == 1.0)
            if bool(stuck.all()):
                self._mark_converged(st, "no entry can move to a lower loss")


def _first_unique(v: torch.Tensor) -> torch.Tensor:
    """Indices of the first occurrence of each distinct value, in their original order."""
    seen: set[float] = set()
    keep = []
    for i, val in enumerate(v.tolist()):
        if val not in seen:
            seen.add(val)
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long, device=v.device)
