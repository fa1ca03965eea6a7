"""Smoothed random directions: correlated in time (:class:`AR1`) or along each tensor's last dimension.

Pass one as ``distribution=`` to :class:`~torchzero_bridge.zeroth_order.RandomizedFDM` (and
:class:`~torchzero_bridge.zeroth_order.ForwardGradient`, :class:`~torchzero_bridge.zeroth_order.RandomGrad`,
the walks); like the named distributions each keeps ``E[d_i²] = 1`` for every entry.

Smoothed directions are not isotropic: ``E[d dᵀ] = C``, the kernel's correlation matrix, so a
randomized estimator's ``(∇f·d) d`` estimates ``C ∇f`` (a smoothed gradient, still a descent
direction: ``∇fᵀ C ∇f ≥ 0``), not ``∇f``. AR1 over a named base keeps ``E[d dᵀ] = I`` at every
step; only consecutive directions are correlated.

* :class:`Smoothed`: Gaussian noise convolved along each tensor's last dimension with a fixed
  kernel ``k`` normalised to ``‖k‖₂ = 1``: row ``r`` of a tensor with last dimension ``L`` is
  ``d[r, j] = Σ_m k[m] z[r, j + m]`` for ``L + K - 1`` fresh ``N(0, 1)`` entries ``z[r]``
  (no padding), so every entry has unit variance and neighbours ``l`` apart along the row have
  correlation ``Σ_m k[m] k[m + l]``. Rows are independent. A scalar tensor counts as one row of one.
* :class:`AR1`: ``d_t = ρ d_{t-1} + √(1 - ρ²) z_t`` with ``z_t`` from a base distribution
  (any named one or :class:`Smoothed`), ``d_0 = z_0``: each entry keeps unit variance and the
  lag-``l`` correlation of the sequence is ``ρ^l``. The chain advances once per committed
  direction (each sample of an estimator, the kept direction of RandomGrad, each move of a walk);
  the previous direction is saved by the optimizer's ``state_dict``.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.smooth_directions import AR1, make_sampler
    >>> sampler = make_sampler(AR1(rho=0.5), "demo")
    >>> w = torch.zeros(4)
    >>> d0 = sampler.draw(1, [w])[0]
    >>> d1 = sampler.draw(2, [w])[0]
    >>> z1 = make_sampler("gaussian", "demo").sample(2, [w])[0]
    >>> torch.allclose(d1, 0.5 * d0 + 0.75 ** 0.5 * z1)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from torchzero_bridge.zeroth_order.directions import CHUNK, DirectionSampler, check_distribution, tensor_seed

__all__ = ["AR1", "CorrelatedSampler", "Distribution", "Smoothed", "SmoothedSampler", "make_sampler"]

_ROW_GOLDEN = 0xBF58476D1CE4E5B9  # separates the row blocks of one tensor's stream


@dataclass(frozen=True)
class Smoothed:
    """Gaussian directions smoothed along each tensor's last dimension (see the module docstring).

    Args:
        kernel: the smoothing weights (normalised to unit L2 norm); default ``(1, 2, 1)``.

    Raises:
        ValueError: an empty kernel, a non-finite weight, or all weights zero.

    Example:
        >>> Smoothed((1.0, 1.0)).weights()
        [0.7071067811865475, 0.7071067811865475]
    """

    kernel: tuple[float, ...] = (1.0, 2.0, 1.0)

    def __post_init__(self) -> None:
        k = tuple(float(v) for v in self.kernel)
        if not k or not all(math.isfinite(v) for v in k) or all(v == 0.0 for v in k):
            raise ValueError(f"Smoothed: kernel expected finite weights, not all zero, got {self.kernel!r}")
        object.__setattr__(self, "kernel", k)

    def weights(self) -> list[float]:
        """The kernel scaled to unit L2 norm."""
        norm = math.sqrt(sum(v * v for v in self.kernel))
        return [v / norm for v in self.kernel]

    def correlation(self, lag: int) -> float:
        """The correlation of two entries ``lag`` apart along a row (0 beyond the kernel's width)."""
        k = self.weights()
        return sum(k[m] * k[m + lag] for m in range(len(k) - lag)) if 0 <= lag < len(k) else 0.0


@dataclass(frozen=True)
class AR1:
    """Directions correlated in time: ``d_t = rho d_{t-1} + sqrt(1 - rho²) z_t``.

    Args:
        rho: the lag-1 correlation, in ``[0, 1)``.
        base: the innovations' distribution: a name (``"gaussian"``...) or :class:`Smoothed`.

    Raises:
        ValueError: ``rho`` outside ``[0, 1)``; an unknown or nested base.

    Example:
        >>> AR1(0.9).rho, AR1(0.9).base
        (0.9, 'gaussian')
    """

    rho: float = 0.9
    base: str | Smoothed = "gaussian"

    def __post_init__(self) -> None:
        if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) or not 0.0 <= self.rho < 1.0:
            raise ValueError(f"AR1: rho expected a number in [0, 1), got {self.rho!r}")
        object.__setattr__(self, "rho", float(self.rho))
        if not isinstance(self.base, Smoothed):
            check_distribution(self.base, "AR1 (base)")


Distribution = str | Smoothed | AR1
"""What ``distribution=`` accepts: a name from ``DISTRIBUTIONS``, :class:`Smoothed` or :class:`AR1`."""


def make_sampler(distribution: Distribution, owner: str) -> DirectionSampler:
    """The sampler for ``distribution``; a ``ValueError`` naming ``owner`` lists the valid choices.

    Example:
        >>> type(make_sampler(Smoothed(), "SPSA")).__name__
        'SmoothedSampler'
    """
    if isinstance(distribution, AR1):
        return CorrelatedSampler(distribution, owner)
    if isinstance(distribution, Smoothed):
        return SmoothedSampler(distribution, owner)
    if not isinstance(distribution, str):
        raise ValueError(
            f"{owner}: distribution expected a name, Smoothed(...) or AR1(...), got {type(distribution).__name__}"
        )
    return DirectionSampler(distribution, owner)


class SmoothedSampler(DirectionSampler):
    """:class:`Smoothed` directions, regenerated piece by piece from a sample seed like the named ones.

    Each tensor's rows come in blocks of ``max(1, CHUNK // L)`` rows (at most all of them), each block from its own
    generator seed, so any piece of :data:`~torchzero_bridge.zeroth_order.directions.CHUNK`
    entries is regenerated without the rest of the tensor.
    """

    def __init__(self, spec: Smoothed, owner: str = "SmoothedSampler") -> None:
        super().__init__("gaussian", owner)
        self.distribution = spec  # type: ignore[assignment]
        self.spec = spec
        self._kernels: dict[tuple[torch.dtype, str], torch.Tensor] = {}

    def pieces(
        self,
        seed: int,
        tensors: Sequence[torch.Tensor],
        scale: float = 1.0,
        only: Callable[[int], bool] | None = None,
    ) -> Iterator[tuple[int, slice | None, torch.Tensor]]:
        """Same contract as :meth:`DirectionSampler.pieces` (``scale`` multiplies the draw)."""
        for i, t in enumerate(tensors):
            n = t.numel()
            if n == 0 or (only is not None and not only(i)):
                continue
            width = t.shape[-1] if t.dim() > 0 else 1
            rows = max(1, min(CHUNK // width, n // width))  # rows per block: one generator seed each
            stream = tensor_seed(seed, i)
            if not t.is_contiguous():
                d = self._rows(stream, 0, n // width, rows, width, t).reshape(t.shape)
                yield i, None, d.mul_(scale) if scale != 1.0 else d
                continue
            for start in range(0, n, CHUNK):
                stop = min(n, start + CHUNK)
                first, last = start // width, (stop - 1) // width
                lo = first // rows * rows
                d = self._rows(stream, lo, last + 1, rows, width, t).reshape(-1)[start - lo * width : stop - lo * width]
                yield i, slice(start, stop), d.mul_(scale) if scale != 1.0 else d

    def _rows(self, stream: int, lo: int, hi: int, rows: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """Rows ``[lo, hi)`` (``lo`` a multiple of ``rows``) of the tensor's smoothed noise, ``(hi - lo, width)``."""
        kernel = self._kernel(like)
        size = kernel.numel()
        gen = self._generator(like.device)
        out = []
        for block in range(lo // rows, -(-hi // rows)):
            gen.manual_seed((stream + (block + 1) * _ROW_GOLDEN) % (1 << 63))
            z = torch.empty((rows, width + size - 1), dtype=like.dtype, device=like.device).normal_(generator=gen)
            out.append(z.unfold(1, size, 1).matmul(kernel))
        return torch.cat(out)[: hi - lo] if len(out) > 1 else out[0][: hi - lo]

    def _kernel(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, str(like.device))
        k = self._kernels.get(key)
        if k is None:
            k = self._kernels[key] = torch.tensor(self.spec.weights(), dtype=like.dtype, device=like.device)
        return k


class CorrelatedSampler(DirectionSampler):
    """:class:`AR1` directions: the direction for ``seed`` is ``rho * prev + sqrt(1 - rho²) * z(seed)``.

    ``prev`` (the last committed direction, per tensor) changes only in :meth:`commit` /
    :meth:`draw`, so any number of candidate seeds can be regenerated between commits. When the
    tensors no longer match ``prev`` (a param group was added) the chain starts afresh.
    """

    def __init__(self, spec: AR1, owner: str = "CorrelatedSampler") -> None:
        super().__init__("gaussian", owner)
        self.distribution = spec  # type: ignore[assignment]
        self.spec = spec
        self.base = make_sampler(spec.base, owner)
        self.prev: list[torch.Tensor] | None = None
        self._keep = math.sqrt(1.0 - spec.rho * spec.rho)

    def pieces(
        self,
        seed: int,
        tensors: Sequence[torch.Tensor],
        scale: float = 1.0,
        only: Callable[[int], bool] | None = None,
    ) -> Iterator[tuple[int, slice | None, torch.Tensor]]:
        """Same contract as :meth:`DirectionSampler.pieces`; ``scale`` should be 1 (see :meth:`sphere_scale`)."""
        prev = self._prev_for(tensors)
        inner = self.base.sphere_scale(seed, tensors)
        for i, sl, z in self.base.pieces(seed, tensors, inner, only):
            if prev is not None:
                p = prev[i] if sl is None else prev[i].view(-1)[sl]
                z.mul_(self._keep).add_(p.view(z.shape), alpha=self.spec.rho)
            yield i, sl, z.mul_(scale) if scale != 1.0 else z

    def sphere_scale(self, seed: int, tensors: Sequence[torch.Tensor]) -> float:
        """1: the base's sphere normalisation is applied to the innovations inside :meth:`pieces`."""
        return 1.0

    def commit(self, seed: int, tensors: Sequence[torch.Tensor]) -> None:
        """Make ``seed``'s direction the previous one (one generation pass)."""
        self.prev = self.sample(seed, tensors)

    def draw(self, seed: int, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``seed``'s direction, committed."""
        d = self.sample(seed, tensors)
        self.prev = [t.clone() for t in d]
        return d

    def state_dict(self) -> dict[str, Any]:
        """The previous direction (``None`` before the first)."""
        return {"prev": None if self.prev is None else [t.clone() for t in self.prev]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        prev = state.get("prev")
        self.prev = None if prev is None else [t.clone() for t in prev]

    def _prev_for(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor] | None:
        prev = self.prev
        if prev is None:
            return None
        if len(prev) != len(tensors) or any(p.shape != t.shape for p, t in zip(prev, tensors)):
            self.prev = None  # the parameters changed (a param group was added): a new chain starts
            return None
        return [p.to(device=t.device, dtype=t.dtype) for p, t in zip(prev, tensors)]
