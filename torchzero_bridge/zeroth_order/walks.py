"""Random walks that only keep moves which lower the loss.

:class:`RandomWalk` of order ``k`` adds Gaussian noise to the ``k``-th difference of the
position and integrates it ``k`` times down to the parameters (order 1: the noise is the
move; order 2: the noise changes a velocity; order 3: an acceleration...).
:class:`SecondOrderRandomWalk` moves a fixed distance and lets the noise turn the
direction of travel instead.

A move is kept only if the loss decreases; otherwise the opposite move is tried
(``on_reject="opposite"``) or the move is undone (``"undo"``). When neither is kept the walk
is undone and its internal velocities are reset to rest.

With minibatches (a closure that evaluates the current batch) pass ``stochastic=True``: each
step then re-evaluates the incumbent on the current batch before trying a move, so a move is
judged against the same batch instead of against a loss some earlier (perhaps easier) batch
gave, which would otherwise freeze the walk. Keep ``lr`` fixed there: success-based ``adapt``
counts moves that only looked better on a noisy batch as successes and can grow the step
until the walk diverges.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import RandomWalk
    >>> w = torch.tensor([1.5, -0.5], requires_grad=True)
    >>> opt = RandomWalk([w], lr=0.1, order=2, seed=0)
    >>> for _ in range(200):
    ...     loss = opt.step(lambda: (w ** 2).sum())
    >>> float(loss) < 0.05
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from torchzero_bridge._checks import check_int, check_positive, check_real
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer, warn_ignored
from torchzero_bridge.zeroth_order.smooth_directions import Distribution, make_sampler
from torchzero_bridge.zeroth_order.space import check_saved_shape

__all__ = ["ON_REJECT", "RandomWalk", "SecondOrderRandomWalk", "check_adapt"]

ON_REJECT = ("opposite", "undo")


def check_adapt(
    adapt: float | None, target_rate: float | None, default_rate: float, owner: str
) -> tuple[float | None, float]:
    """Validate the success-based step-size options shared by walks and annealing.

    Args:
        adapt: factor ``> 1`` multiplying the step scale after an accepted move (the scale is
            multiplied by ``adapt ** (-target_rate / (1 - target_rate))`` after a rejected
            one, so it is stable at an acceptance rate of ``target_rate``); ``None`` keeps the
            scale fixed.
        target_rate: acceptance rate in ``(0, 1)`` at which the scale stays constant
            (``None``: ``default_rate``). Given without ``adapt`` it has no effect and an
            :class:`~torchzero_bridge.errors.IgnoredOptionWarning` is issued.
        default_rate: the method's default target rate.
        owner: the optimizer's name, used in error messages.

    Raises:
        ValueError: ``adapt`` not ``> 1`` or ``target_rate`` outside ``(0, 1)``.

    Example:
        >>> check_adapt(1.5, None, 0.2, "RandomWalk")
        (1.5, 0.2)
    """
    if adapt is not None:
        check_real(adapt, "adapt", owner, low=1.0)
    if target_rate is None:
        return (None if adapt is None else float(adapt)), default_rate
    rate = check_real(target_rate, "target_rate", owner, high=1.0)
    if adapt is None:
        warn_ignored("target_rate", "it only matters with adapt (success-based step-size control)")
    return (None if adapt is None else float(adapt)), rate


def adapt_scale(scale: float, accepted: bool, adapt: float | None, target_rate: float) -> float:
    """The step scale after one move (see :func:`check_adapt`); unchanged when ``adapt`` is None.

    Example:
        >>> adapt_scale(1.0, True, 2.0, 0.2), adapt_scale(1.0, False, 2.0, 0.2)
        (2.0, 0.8408964152537145)
    """
    if adapt is None:
        return scale
    return scale * (adapt if accepted else adapt ** (-target_rate / (1.0 - target_rate)))


class _Walk(DerivativeFreeOptimizer):
    """Shared options and the try / opposite / undo logic of the walks."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        on_reject: str,
        adapt: float | None,
        target_rate: float | None,
        seed: int | None,
        generator: torch.Generator | None,
        stochastic: bool,
        distribution: Distribution | None = None,
    ) -> None:
        self.sampler = None if distribution is None else make_sampler(distribution, type(self).__name__)
        if on_reject not in ON_REJECT:
            raise ValueError(f"{type(self).__name__}: on_reject expected one of {ON_REJECT}, got {on_reject!r}")
        self.on_reject = on_reject
        self.adapt, self.target_rate = check_adapt(adapt, target_rate, 0.2, type(self).__name__)
        super().__init__(params, defaults, seed=seed, generator=generator, stochastic=stochastic)

    @property
    def distribution(self) -> Distribution | None:
        """The noise's direction distribution (``None``: ``torch.randn`` over the flat vector)."""
        return None if self.sampler is None else self.sampler.distribution

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        check_positive(group["lr"], f"lr ({where})", type(self).__name__)

    def _noise(self, space: FlatSpace, st: dict[str, Any]) -> torch.Tensor:
        """One step's noise over the flat vector: ``torch.randn``, or a direction of ``distribution``.

        A direction is drawn per parameter tensor from a sample seed taken from the walk's generator
        (see :mod:`~torchzero_bridge.zeroth_order.directions`); what a later direction depends on
        (an ``AR1`` chain's previous direction) is kept in the method state as ``directions``.
        """
        gen = self._generator(space)
        if self.sampler is None:
            return torch.randn(space.n, generator=gen, dtype=space.dtype, device=space.device)
        if "directions" not in st:  # a fresh state: a fresh chain
            self.sampler.load_state_dict({})
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
        pieces = self.sampler.draw(seed, space.flat.real)
        st["directions"] = self.sampler.state_dict()
        return torch.cat([d.reshape(-1) for d in pieces]).to(device=space.device, dtype=space.dtype)

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        if self.sampler is not None:
            self.sampler.load_state_dict(self.method_state.get("directions") or {})

    def _stalled(self, space: FlatSpace, st: dict[str, Any]) -> bool:
        """With ``adapt``: mark the walk converged once a step of the adapted scale no longer
        changes any entry (the scale only shrinks from there, so no move can ever be made)."""
        if self.adapt is None:
            return False
        x = st["best_x"]
        step = space.group_vector(self.param_groups, "lr") * st["scale"]
        if torch.equal(space.project(x + step), x) and torch.equal(space.project(x - step), x):
            self._mark_converged(st, "the adapted step no longer changes the parameters")
            return True
        return False

    def _try(self, space: FlatSpace, st: dict[str, Any], move: torch.Tensor) -> int:
        """Try ``best + move``, then (optionally) ``best - move``; 1, -1, or 0 when neither is kept."""
        x = st["best_x"]
        f0 = st["best_f"]
        for sign in (1, -1) if self.on_reject == "opposite" else (1,):
            self._evaluate(space, space.project(x + sign * move))
            if st["best_f"] < f0:
                st["scale"] = adapt_scale(st["scale"], True, self.adapt, self.target_rate)
                return sign
        st["scale"] = adapt_scale(st["scale"], False, self.adapt, self.target_rate)
        return 0


class RandomWalk(_Walk):
    """``order``-th order random walk that keeps only moves lowering the loss.

    With ``z ~ N(0, I)`` drawn as ``torch.randn(n, generator=g, dtype=float64)`` on the
    parameters' device, each step adds ``lr * scale * z`` to the highest of ``order - 1``
    internal differences, integrates them down (``d[k] += d[k + 1]``) and tries
    ``x + d[0]`` (order 1 tries ``x + lr * scale * z``). If the loss is not lower, the
    opposite move ``x - d[0]`` is tried (and, when kept, every difference is negated);
    if that fails too, the move is undone and the differences are reset to zero.

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: per-group noise scale.
        order: how many times the noise is integrated (1 = plain random walk).
        on_reject: ``"opposite"`` (try the reversed move, default) or ``"undo"``.
        adapt: optional success-based step-size factor (``> 1``, see :func:`check_adapt`). Once the
            adapted step no longer changes the parameters the walk sets ``converged`` and stops.
        target_rate: acceptance rate at which ``adapt`` keeps the scale constant (default 0.2).
        bounds: per-group ``(lo, hi)``; moves are clipped to them.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        stochastic: minibatch mode: every step first re-evaluates the incumbent on the closure's
            current batch and compares the moves with that value (one more closure run per step).
        distribution: draw the noise ``z`` per tensor from a direction distribution (a name such as
            ``"rademacher"``, ``smooth_directions.Smoothed`` or ``AR1``) instead of ``torch.randn``.

    Raises:
        ValueError: non-positive ``lr`` or ``order``, unknown ``on_reject``, bad ``adapt``.
        TypeError: integer or boolean tensors.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import RandomWalk
        >>> w = torch.tensor([2.0, 2.0], requires_grad=True)
        >>> opt = RandomWalk([w], lr=0.5, adapt=1.5, seed=0)
        >>> for _ in range(300):
        ...     loss = opt.step(lambda: (w ** 2).sum())
        >>> float(loss) < 1e-6
        True
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        order: int = 1,
        *,
        on_reject: str = "opposite",
        adapt: float | None = None,
        target_rate: float | None = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        stochastic: bool = False,
        distribution: Distribution | None = None,
    ) -> None:
        self.order = check_int(order, "order", type(self).__name__)
        super().__init__(
            params,
            {"lr": lr, "bounds": bounds},
            on_reject,
            adapt,
            target_rate,
            seed,
            generator,
            stochastic,
            distribution,
        )

    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        st["diffs"] = torch.zeros((self.order - 1, space.n), dtype=space.dtype, device=space.device)
        st.setdefault("scale", 1.0)

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        check_saved_shape(st, "diffs", (self.order - 1, space.n), f" for order={self.order}")

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        if self._stalled(space, st):
            return
        z = self._noise(space, st)
        move = space.group_vector(self.param_groups, "lr") * st["scale"] * z
        diffs = st["diffs"].clone()
        for k in range(self.order - 2, -1, -1):
            diffs[k] += move
            move = diffs[k].clone()
        sign = self._try(space, st, move)
        if sign == 0:
            st["diffs"].zero_()
        else:
            st["diffs"] = diffs * sign


class SecondOrderRandomWalk(_Walk):
    """Random walk that moves ``lr`` along a direction of travel which the noise turns.

    The direction ``u`` is a unit vector (initially random). Each step turns it,
    ``u <- normalize(u + turn * z / sqrt(n))`` with ``z ~ N(0, I)``, and tries
    ``x + lr * scale * u``. If the loss is not lower the opposite move is tried (and, when
    kept, ``u`` is reversed); otherwise the move is undone and the turned ``u`` is kept.

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: per-group step length.
        turn: how strongly the noise turns the direction (about the angle in radians for small values).
        on_reject: ``"opposite"`` (default) or ``"undo"``.
        adapt: optional success-based step-size factor (``> 1``); the walk sets ``converged`` once
            the adapted step no longer changes the parameters.
        target_rate: acceptance rate at which ``adapt`` keeps the scale constant (default 0.2).
        bounds: per-group ``(lo, hi)``; moves are clipped to them.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        stochastic: minibatch mode: every step first re-evaluates the incumbent on the closure's
            current batch and compares the moves with that value (one more closure run per step).
        distribution: draw the noise ``z`` per tensor from a direction distribution (a name such as
            ``"rademacher"``, ``smooth_directions.Smoothed`` or ``AR1``) instead of ``torch.randn``.

    Raises:
        ValueError: non-positive ``lr`` or ``turn``, unknown ``on_reject``, bad ``adapt``.
        TypeError: integer or boolean tensors.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import SecondOrderRandomWalk
        >>> w = torch.tensor([2.0, 2.0], requires_grad=True)
        >>> opt = SecondOrderRandomWalk([w], lr=0.5, adapt=1.5, seed=0)
        >>> for _ in range(300):
        ...     loss = opt.step(lambda: (w ** 2).sum())
        >>> float(loss) < 1e-4
        True
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        turn: float = 0.5,
        *,
        on_reject: str = "opposite",
        adapt: float | None = None,
        target_rate: float | None = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        stochastic: bool = False,
        distribution: Distribution | None = None,
    ) -> None:
        self.turn = check_positive(turn, "turn", type(self).__name__)
        super().__init__(
            params,
            {"lr": lr, "bounds": bounds},
            on_reject,
            adapt,
            target_rate,
            seed,
            generator,
            stochastic,
            distribution,
        )

    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        st.setdefault("scale", 1.0)
        if st.get("direction") is None:
            u = torch.randn(space.n, generator=self._generator(space), dtype=space.dtype, device=space.device)
            st["direction"] = u / torch.linalg.vector_norm(u)

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        u = st.get("direction")
        if u is not None and u.numel() != space.n:
            raise ValueError(f"state_dict: saved direction has {u.numel()} entries, expected {space.n}")

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        if self._stalled(space, st):
            return
        z = self._noise(space, st)
        u = st["direction"] + self.turn * z / space.n**0.5
        u = u / torch.linalg.vector_norm(u)
        move = space.group_vector(self.param_groups, "lr") * st["scale"] * u
        sign = self._try(space, st, move)
        st["direction"] = u * (sign if sign != 0 else 1)
