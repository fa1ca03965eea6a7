"""Random directions for zeroth-order estimators, reproducible from one integer seed per sample.

Every distribution is normalized so that a direction ``d`` over all parameters has
``E[d dᵀ] = I``; then ``(∇f · d) d`` is an unbiased estimate of ``∇f``:

* ``"rademacher"``: entries ``±1`` with equal probability;
* ``"gaussian"``: entries ``N(0, 1)``;
* ``"uniform"``: entries uniform on ``[-√3, √3]``;
* ``"sphere"``: uniform on the sphere of radius ``√n`` (``n`` = total number of entries).

A direction is generated from a *sample seed*: the generator of each device is re-seeded with
it and the parameters are filled in order. Generating twice from the same seed gives the same
direction bit for bit, which is how :class:`~torchzero_bridge.zeroth_order.MeZO` avoids
storing it.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.directions import DirectionSampler
    >>> w = torch.zeros(3)
    >>> sampler = DirectionSampler("rademacher")
    >>> d1, d2 = sampler.sample(7, [w]), sampler.sample(7, [w])
    >>> torch.equal(d1[0], d2[0]), sorted(set(d1[0].abs().tolist()))
    (True, [1.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["DISTRIBUTIONS", "DirectionSampler", "check_distribution"]

DISTRIBUTIONS = ("rademacher", "gaussian", "uniform", "sphere")
_SQRT3 = math.sqrt(3.0)


def check_distribution(distribution: str, owner: str) -> str:
    """Return ``distribution`` or raise a ``ValueError`` listing the valid names.

    Args:
        distribution: the requested name.
        owner: the class or function named in the message.

    Example:
        >>> check_distribution("sphere", "SPSA")
        'sphere'
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"{owner}: distribution expected one of {DISTRIBUTIONS}, got {distribution!r}")
    return distribution


class DirectionSampler:
    """Fills tensors with a random direction drawn from a named distribution.

    Args:
        distribution: one of :data:`DISTRIBUTIONS`.
        owner: name used in error messages.

    Raises:
        ValueError: unknown distribution.
    """

    def __init__(self, distribution: str, owner: str = "DirectionSampler") -> None:
        self.distribution = check_distribution(distribution, owner)
        self._gens: dict[str, torch.Generator] = {}

    def foreach(
        self,
        seed: int,
        tensors: Sequence[torch.Tensor],
        fn: Callable[[int, torch.Tensor], object],
        scale: float = 1.0,
    ) -> None:
        """Call ``fn(i, piece)`` with the direction's piece for each tensor, one piece alive at a time.

        Args:
            seed: the sample seed.
            tensors: real floating tensors giving shape, dtype and device of each piece.
            fn: receives the tensor's index and its piece (a temporary it may modify).
            scale: multiplies the raw draw (the sphere's ``√n / ‖z‖``, see :meth:`sphere_scale`).
        """
        self._reseed(seed, tensors)
        for i, t in enumerate(tensors):
            piece = self._draw(t, scale)
            fn(i, piece)
            del piece

    def sample(self, seed: int, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The whole direction as a list of tensors shaped like ``tensors``."""
        pieces: list[torch.Tensor] = []
        self.foreach(seed, tensors, lambda _, piece: pieces.append(piece))
        if self.distribution == "sphere":
            scale = _sphere_factor(sum(_sum_squares(p) for p in pieces), sum(t.numel() for t in tensors))
            for p in pieces:
                p.mul_(scale)
        return pieces

    def sphere_scale(self, seed: int, tensors: Sequence[torch.Tensor]) -> float:
        """The factor :meth:`foreach` needs for ``"sphere"`` (1 otherwise), one piece alive at a time."""
        if self.distribution != "sphere":
            return 1.0
        total = [0.0]

        def add(_: int, piece: torch.Tensor) -> None:
            total[0] += _sum_squares(piece)

        self.foreach(seed, tensors, add)
        return _sphere_factor(total[0], sum(t.numel() for t in tensors))

    # ------------------------------------------------------------------ internals
    def _reseed(self, seed: int, tensors: Sequence[torch.Tensor]) -> None:
        for key in {str(t.device) for t in tensors}:
            gen = self._gens.get(key)
            if gen is None:
                gen = self._gens[key] = torch.Generator(device=key)
            gen.manual_seed(seed)

    def _draw(self, like: torch.Tensor, scale: float) -> torch.Tensor:
        gen = self._gens[str(like.device)]
        out = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        if self.distribution == "rademacher":
            out.bernoulli_(0.5, generator=gen).mul_(2.0).sub_(1.0)
        elif self.distribution == "uniform":
            out.uniform_(-_SQRT3, _SQRT3, generator=gen)
        else:  # gaussian, sphere (normalized by the caller's scale)
            out.normal_(generator=gen)
        if scale != 1.0:
            out.mul_(scale)
        return out


def _sum_squares(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t, dtype=torch.float64)) ** 2


def _sphere_factor(sum_squares: float, n: int) -> float:
    if sum_squares == 0.0:  # probability zero; keeps the direction finite
        return 1.0
    return math.sqrt(n / sum_squares)
