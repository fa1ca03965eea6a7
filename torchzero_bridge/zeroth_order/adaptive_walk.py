"""A random walk whose order adapts: it rises while moves keep lowering the loss and falls after failures.

Order ``k`` of the walk keeps the velocities ``v[0], ..., v[k - 2]`` (``v[0]`` the last accepted
displacement of the parameters, ``v[j]`` the last change of ``v[j - 1]``). A move of order ``k``
is a random perturbation of the order ``k - 1`` velocity, carried down to the parameters::

    v[k-2] += lr * z;  v[k-3] += v[k-2];  ...;  v[0] += v[1];  x += v[0]

(order 1 moves ``x += lr * z``). A rejected move is undone in reverse order (parameters first,
then ``v[0]``, ``v[1]``, ... back to the velocities before the move). Each accepted move raises the
order by one (up to ``max_order``; the new top velocity starts at rest); ``retries`` rejected moves in
a row lower it by one (the dropped velocity is cleared). With ``convex=True`` an accepted move raises
the order only when the walk's top step, ``‖v[k-2]‖`` (``‖x' - x‖`` at order 1), is shorter than at
the previous accepted move of the same order (so the first kept move of an order never raises it):
the walk extrapolates further only while its highest differences shrink, as they do near the
minimum of a convex function.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import AdaptiveOrderWalk
    >>> w = torch.tensor([1.5, -0.5], dtype=torch.float64)
    >>> opt = AdaptiveOrderWalk([w], lr=0.05, seed=0)
    >>> for _ in range(300):
    ...     loss = opt.step(lambda: (w ** 2).sum())
    >>> float(loss) < 1e-3, 1 <= opt.order <= opt.max_order
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from torchzero_bridge._checks import check_int
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.zeroth_order.smooth_directions import Distribution
from torchzero_bridge.zeroth_order.space import check_saved_shape
from torchzero_bridge.zeroth_order.walks import _Walk

__all__ = ["AdaptiveOrderWalk"]


class AdaptiveOrderWalk(_Walk):
    """Random walk of adaptive order (the module docstring gives the rule).

    Each step draws ``z ~ N(0, I)`` as ``torch.randn(n, generator=g, dtype=float64)`` on the
    parameters' device, makes one move of the current order and tries it (then the opposite
    move with ``on_reject="opposite"``, which negates every velocity when kept). Closure runs
    per step: 1 or 2 (plus 1 with ``stochastic=True``).

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: per-group noise scale.
        max_order: the highest order the walk rises to (1 = a plain random walk).
        retries: rejected moves in a row after which the order falls by one (``m``).
        convex: raise the order only while the top step shrinks (see the module docstring).
        start_order: the order of the first move (default 1).
        on_reject: ``"undo"`` (default: only undo a rejected move) or ``"opposite"`` (try the
            reversed move first).
        adapt: optional success-based step-size factor (``> 1``; see
            :func:`~torchzero_bridge.zeroth_order.walks.check_adapt`).
        target_rate: acceptance rate at which ``adapt`` keeps the scale constant (default 0.2).
        bounds: per-group ``(lo, hi)``; moves are clipped to them.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        stochastic: minibatch mode: re-evaluate the incumbent on each step's batch first.
        distribution: draw ``z`` per tensor from a direction distribution (a name,
            ``smooth_directions.Smoothed`` or ``AR1``) instead of ``torch.randn``.

    Attributes:
        order: the order of the next move.

    Raises:
        ValueError: non-positive ``lr``, ``max_order`` or ``retries``; ``start_order`` outside
            ``[1, max_order]``; unknown ``on_reject``; bad ``adapt``.
        TypeError: integer or boolean tensors; ``convex`` not a bool.

    Example:
        >>> import torch
        >>> from torchzero_bridge.zeroth_order import AdaptiveOrderWalk
        >>> w = torch.tensor([2.0, 2.0], dtype=torch.float64)
        >>> opt = AdaptiveOrderWalk([w], lr=0.1, max_order=3, retries=2, seed=1)
        >>> orders = []
        >>> for _ in range(50):
        ...     loss = opt.step(lambda: (w ** 2).sum())
        ...     orders.append(opt.order)
        >>> max(orders), float(loss) < 8.0
        (3, True)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        max_order: int = 4,
        retries: int = 3,
        *,
        convex: bool = False,
        start_order: int = 1,
        on_reject: str = "undo",
        adapt: float | None = None,
        target_rate: float | None = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        stochastic: bool = False,
        distribution: Distribution | None = None,
    ) -> None:
        name = type(self).__name__
        self.max_order = check_int(max_order, "max_order", name)
        self.retries = check_int(retries, "retries", name)
        if not isinstance(convex, bool):
            raise TypeError(f"{name}: convex expected True or False, got {convex!r}")
        self.convex = convex
        self.start_order = check_int(start_order, "start_order", name)
        if self.start_order > self.max_order:
            raise ValueError(f"{name}: start_order expected at most max_order={self.max_order}, got {start_order!r}")
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

    @property
    def order(self) -> int:
        """The order of the next move."""
        return int(self.method_state.get("order", self.start_order))

    def _restart(self, space: FlatSpace, st: dict[str, Any], x: torch.Tensor, f: float) -> None:
        st["vel"] = torch.zeros((self.max_order - 1, space.n), dtype=space.dtype, device=space.device)
        st["order"] = self.start_order
        st["fails"] = 0
        st["last_size"] = math.inf
        st.setdefault("scale", 1.0)

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        check_saved_shape(st, "vel", (self.max_order - 1, space.n), f" for max_order={self.max_order}")

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        if self._stalled(space, st):
            return
        k = int(st["order"])
        z = self._noise(space, st)
        delta = space.group_vector(self.param_groups, "lr") * st["scale"] * z
        vel = st["vel"]
        saved = vel[: k - 1].clone()
        if k == 1:
            move = delta
        else:  # the top velocity takes the noise; each lower one takes the one above it
            vel[k - 2] += delta
            for j in range(k - 3, -1, -1):
                vel[j] += vel[j + 1]
            move = vel[0].clone()
        sign = self._try(space, st, move)
        if sign == 0:  # undo in reverse order: the parameters were never moved, then v[0], v[1], ...
            for j in range(k - 1):
                vel[j].copy_(saved[j])
            st["fails"] = int(st["fails"]) + 1
            if st["fails"] >= self.retries and k > 1:
                vel[k - 2].zero_()
                self._set_order(st, k - 1)
            return
        if sign < 0:
            vel[: k - 1].neg_()
        st["fails"] = 0
        size = float(torch.linalg.vector_norm(move if k == 1 else vel[k - 2]))
        last = float(st["last_size"])  # inf: no earlier kept move of this order
        rises = not self.convex or (math.isfinite(last) and size < last)
        st["last_size"] = size
        if rises and k < self.max_order:
            vel[k - 1].zero_()
            self._set_order(st, k + 1)

    @staticmethod
    def _set_order(st: dict[str, Any], order: int) -> None:
        st["order"] = order
        st["fails"] = 0
        st["last_size"] = math.inf
