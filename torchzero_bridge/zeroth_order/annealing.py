"""Simulated annealing with Gaussian proposals and a geometric cooling schedule.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import SimulatedAnnealing
    >>> w = torch.tensor([2.0, -1.0], requires_grad=True)
    >>> opt = SimulatedAnnealing([w], lr=0.3, init_temp=1.0, cooling=0.98, seed=0)
    >>> for _ in range(400):
    ...     loss = opt.step(lambda: (w ** 2).sum())
    >>> float(loss) < 0.05
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from torchzero_bridge._checks import check_positive
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer
from torchzero_bridge.zeroth_order.walks import adapt_scale, check_adapt

__all__ = ["SimulatedAnnealing"]


class SimulatedAnnealing(DerivativeFreeOptimizer):
    """Simulated annealing: Metropolis acceptance at a temperature that cools every step.

    The chain keeps a *current* point, separate from the best point seen (which the
    parameters hold after every step). Each step proposes
    ``current + lr * scale * (T / init_temp) ** temp_power * z`` (``z ~ N(0, I)``; integer
    entries rounded; if the proposal equals the current point, one random entry is moved by
    ``+-lr``, at least 1 for integers), accepts it with probability
    ``min(1, exp(-(f_new - f_current) / T))``, then cools ``T <- max(T * cooling, min_temp)``.

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: per-group proposal scale.
        init_temp: starting temperature, in units of the loss.
        cooling: factor in ``(0, 1]`` applied to the temperature after each step.
        min_temp: the temperature never falls below this (``0`` allows pure descent).
        temp_power: proposals shrink as the chain cools: their scale is multiplied by
            ``(T / init_temp) ** temp_power`` (``0`` keeps it fixed).
        adapt: optional factor ``> 1`` for acceptance-based step-size control (see
            :func:`~torchzero_bridge.zeroth_order.walks.check_adapt`); ``None`` keeps ``lr``.
        target_rate: acceptance rate at which ``adapt`` keeps the scale constant (default 0.3).
        bounds: per-group ``(lo, hi)``; proposals are clipped to them.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        stochastic: minibatch mode: every step first re-evaluates the best point and the chain's
            current point on the closure's current batch (one or two more closure runs), so the
            Metropolis test and the best point compare losses of the same batch.

    Raises:
        ValueError: non-positive ``lr`` or ``init_temp``, ``cooling`` outside ``(0, 1]``,
            negative ``min_temp``, bad ``adapt``.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import SimulatedAnnealing
        >>> k = torch.tensor([7, -4])
        >>> opt = SimulatedAnnealing([k], lr=1.0, init_temp=2.0, cooling=0.95, seed=0)
        >>> for _ in range(300):
        ...     loss = opt.step(lambda: float((k ** 2).sum()))
        >>> k.tolist(), float(loss)
        ([0, 0], 0.0)
    """

    allow_integer: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        init_temp: float = 1.0,
        cooling: float = 0.99,
        *,
        min_temp: float = 0.0,
        temp_power: float = 0.5,
        adapt: float | None = None,
        target_rate: float | None = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        stochastic: bool = False,
    ) -> None:
        self.init_temp = check_positive(init_temp, "init_temp", type(self).__name__)
        self.cooling = check_positive(cooling, "cooling", type(self).__name__)
        if self.cooling > 1:
            raise ValueError(f"{type(self).__name__}: cooling expected a factor in (0, 1], got {cooling!r}")
        self.min_temp = check_positive(min_temp, "min_temp", type(self).__name__, allow_zero=True)
        self.temp_power = check_positive(temp_power, "temp_power", type(self).__name__, allow_zero=True)
        self.adapt, self.target_rate = check_adapt(adapt, target_rate, 0.3, type(self).__name__)
        super().__init__(params, {"lr": lr, "bounds": bounds}, seed=seed, generator=generator, stochastic=stochastic)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        check_positive(group["lr"], f"lr ({where})", type(self).__name__)

    @property
    def temperature(self) -> float:
        """The current temperature (``init_temp`` before the first step)."""
        return float(self._dfo_state().get("temp", self.init_temp))

    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        st["current"], st["current_f"] = x.clone(), f
        st.setdefault("temp", self.init_temp)
        st.setdefault("scale", 1.0)

    def _refresh(self, space: FlatSpace, st: dict[str, Any], f: float) -> None:
        if torch.equal(st["current"], st["best_x"]):
            st["current_f"] = f
        else:
            st["current_f"] = self._evaluate(space, st["current"])

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        cur = st.get("current")
        if cur is not None and cur.numel() != space.n:
            raise ValueError(f"state_dict: the saved chain has {cur.numel()} entries, expected {space.n}")

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        gen = self._generator(space)
        shrink = (st["temp"] / self.init_temp) ** self.temp_power if self.temp_power else 1.0
        lr = space.group_vector(self.param_groups, "lr") * (st["scale"] * shrink)
        x = st["current"]
        z = torch.randn(space.n, generator=gen, dtype=space.dtype, device=space.device)
        y = space.project(x + lr * z)
        if torch.equal(y, x):
            y = self._nudge(space, x, lr, gen)
        f = self._evaluate(space, y)
        u = float(torch.rand((), generator=gen, dtype=space.dtype, device=space.device))
        delta = f - st["current_f"]
        temp = st["temp"]
        accepted = delta <= 0 or (temp > 0 and math.isfinite(f) and u < math.exp(-delta / temp))
        if accepted:
            st["current"], st["current_f"] = y, f
        st["scale"] = adapt_scale(st["scale"], accepted, self.adapt, self.target_rate)
        st["temp"] = max(temp * self.cooling, self.min_temp)

    def _nudge(self, space: FlatSpace, x: torch.Tensor, lr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Move one random entry by ``+-lr`` (at least 1 for integers) so the proposal differs."""
        k = int(torch.randint(space.n, (), generator=gen, device=space.device))
        sign = 1.0 if float(torch.rand((), generator=gen, dtype=space.dtype, device=space.device)) < 0.5 else -1.0
        h = float(lr[k])
        if bool(space.integer[k]):
            h = max(1.0, round(h))
        y = x.clone()
        y[k] += sign * h
        y = space.project(y)
        if torch.equal(y, x):  # at a bound: go the other way
            y = x.clone()
            y[k] -= sign * h
            y = space.project(y)
        return y
