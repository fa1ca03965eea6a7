"""Random directions for zeroth-order estimators, regenerated bit for bit from one integer seed per sample.

Every distribution is normalized so that a direction ``d`` over all parameters has
``E[d dᵀ] = I``; then ``(∇f · d) d`` is an unbiased estimate of ``∇f``:

* ``"rademacher"``: entries ``±1`` with equal probability (one random bit each);
* ``"gaussian"``: entries ``N(0, 1)``;
* ``"uniform"``: entries uniform on ``[-√3, √3]``;
* ``"sphere"``: uniform on the sphere of radius ``√n`` (``n`` = total number of entries).

**Seeds.** A direction is generated from a *sample seed* ``s``. Tensor ``i`` gets its own stream:
one ``torch.Generator`` per device, re-seeded with ``(s + (i + 1)·0x9E3779B97F4A7C15) mod 2⁶³``
(distinct in the low 32 bits for every tensor of a sample, which is all torch's CPU generator
uses), and the tensor is filled in chunks of :data:`CHUNK` entries in order. So a tensor's piece
can be regenerated alone, and the same seed gives the same direction bit for bit on the same
device, dtype and torch version (not across devices). This is how
:class:`~torchzero_bridge.zeroth_order.MeZO` avoids storing the direction.

**Cost.** Rademacher entries come from 64-bit random words (one generator call per 64 entries)
expanded through a 256×8 table of ``±1`` (~0.8 ns per entry on one CPU core, 40× cheaper than
``bernoulli_``); Gaussian and uniform entries are one ``normal_``/``uniform_`` call per chunk
(~12 ns per entry on a CPU core: prefer Rademacher on CPU when directions are regenerated).
At most one chunk of the direction is alive at a time: the sampler keeps one scratch buffer per
dtype and device of ``min(largest contiguous tensor, CHUNK)`` entries between calls (1 MiB for
float32), and a tensor that is not contiguous gets its own for the duration of its piece.

Directions smoothed in time or along each tensor's last dimension are in
:mod:`~torchzero_bridge.zeroth_order.smooth_directions` (``AR1``, ``Smoothed``).

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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

__all__ = ["CHUNK", "DISTRIBUTIONS", "DirectionSampler", "check_distribution", "piece_of", "tensor_seed"]

DISTRIBUTIONS = ("rademacher", "gaussian", "uniform", "sphere")
CHUNK = 1 << 18
"""Entries generated per call (a multiple of 64): the scratch buffer's size for large tensors."""

_SQRT3 = math.sqrt(3.0)
_GOLDEN = 0x9E3779B97F4A7C15
_WORD_BITS = 64


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


def tensor_seed(seed: int, index: int) -> int:
    """The generator seed of tensor ``index`` in the direction of sample ``seed``.

    Example:
        >>> tensor_seed(0, 0) != tensor_seed(0, 1)
        True
    """
    return (seed + (index + 1) * _GOLDEN) % (1 << 63)


def piece_of(t: torch.Tensor, sl: slice | None) -> torch.Tensor:
    """The part of ``t`` a piece covers: a slice of its flattened entries, or ``t`` itself for ``None``.

    Example:
        >>> piece_of(torch.arange(6.0).view(2, 3), slice(1, 3)).tolist()
        [1.0, 2.0]
    """
    return t if sl is None else t.view(-1)[sl]


class DirectionSampler:
    """Generates a random direction piece by piece from a sample seed.

    Args:
        distribution: one of :data:`DISTRIBUTIONS`.
        owner: name used in error messages.

    Raises:
        ValueError: unknown distribution.
    """

    def __init__(self, distribution: str, owner: str = "DirectionSampler") -> None:
        self.distribution = check_distribution(distribution, owner)
        self.owner = owner
        self._gens: dict[str, torch.Generator] = {}
        self._tables: dict[tuple[torch.dtype, str], torch.Tensor] = {}
        self._buffers: dict[tuple[torch.dtype, str], torch.Tensor] = {}

    def pieces(
        self,
        seed: int,
        tensors: Sequence[torch.Tensor],
        scale: float = 1.0,
        only: Callable[[int], bool] | None = None,
    ) -> Iterator[tuple[int, slice | None, torch.Tensor]]:
        """Yield ``(i, sl, d)``: tensor ``i``'s direction over ``piece_of(tensors[i], sl)``, in order.

        A contiguous tensor comes in slices of at most :data:`CHUNK` entries; any other tensor as
        one piece (``sl=None``). ``d`` is shaped like the piece and lives in a scratch buffer that
        the next piece overwrites: copy it to keep it.

        Args:
            seed: the sample seed.
            tensors: real floating tensors giving shape, dtype and device of each piece.
            scale: multiplies the raw draw (the sphere's ``√n / ‖z‖``, see :meth:`sphere_scale`).
            only: generate tensor ``i`` only when ``only(i)`` is true (the others are skipped).
        """
        for i, t in enumerate(tensors):
            n = t.numel()
            if n == 0 or (only is not None and not only(i)):
                continue
            gen = self._generator(t.device)
            gen.manual_seed(tensor_seed(seed, i))
            if not t.is_contiguous():
                buf = torch.empty(_padded(n), dtype=t.dtype, device=t.device)  # an irregular tensor: its own
                yield i, None, self._fill(buf, n, gen, scale).view(t.shape)
                continue
            buf = self._scratch(t, _padded(min(n, CHUNK)))
            for start in range(0, n, CHUNK):
                stop = min(n, start + CHUNK)
                yield i, slice(start, stop), self._fill(buf, stop - start, gen, scale)

    def sample(self, seed: int, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The whole direction as new tensors shaped like ``tensors`` (sphere normalized)."""
        out = [torch.empty_like(t, memory_format=torch.contiguous_format) for t in tensors]
        for i, sl, d in self.pieces(seed, tensors, self.sphere_scale(seed, tensors)):
            piece_of(out[i], sl).copy_(d)
        return out

    def draw(self, seed: int, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`sample`, committed (see :meth:`commit`)."""
        return self.sample(seed, tensors)

    def commit(self, seed: int, tensors: Sequence[torch.Tensor]) -> None:
        """Record that ``seed``'s direction was used: nothing for these memoryless distributions.

        Samplers whose directions depend on the previous one (``smooth_directions.AR1``) advance here.
        """

    def state_dict(self) -> dict[str, Any]:
        """What a later direction depends on: nothing here."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (nothing here)."""

    def sphere_scale(self, seed: int, tensors: Sequence[torch.Tensor]) -> float:
        """The ``scale`` that normalizes ``"sphere"`` (one generation pass; 1 for the others)."""
        if self.distribution != "sphere":
            return 1.0
        total = 0.0
        for _, _, d in self.pieces(seed, tensors):
            total += float(torch.linalg.vector_norm(d, dtype=torch.float64)) ** 2
        if total == 0.0:  # probability zero; keeps the direction finite
            return 1.0
        return math.sqrt(sum(t.numel() for t in tensors) / total)

    # ------------------------------------------------------------------ internals
    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._gens.get(key)
        if gen is None:
            gen = self._gens[key] = torch.Generator(device=device)
        return gen

    def _scratch(self, like: torch.Tensor, n: int) -> torch.Tensor:
        """The reused buffer for ``like``'s dtype and device, at least ``n`` entries (kept between calls)."""
        key = (like.dtype, str(like.device))
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < n:
            buf = self._buffers[key] = torch.empty(n, dtype=like.dtype, device=like.device)
        return buf

    def _fill(self, buf: torch.Tensor, n: int, gen: torch.Generator, scale: float) -> torch.Tensor:
        if self.distribution == "rademacher":
            words = -(-n // _WORD_BITS)
            bits = self._scratch(torch.empty(0, dtype=torch.int64, device=buf.device), words)[:words]
            bits.random_(-(1 << 63), None, generator=gen)  # the full 64-bit range: every bit fair
            index = self._scratch(torch.empty(0, dtype=torch.int32, device=buf.device), 8 * words)[: 8 * words]
            index.copy_(bits.view(torch.uint8))
            torch.index_select(self._table(buf), 0, index, out=buf[: words * _WORD_BITS].view(-1, 8))
            out = buf[:n]
        else:
            out = buf[:n]
            if self.distribution == "uniform":
                out.uniform_(-_SQRT3, _SQRT3, generator=gen)
            else:  # gaussian, sphere (normalized by the caller's scale)
                out.normal_(generator=gen)
        if scale != 1.0:
            out.mul_(scale)
        return out

    def _table(self, like: torch.Tensor) -> torch.Tensor:
        """Row ``b``: the eight signs ``±1`` of the bits of byte ``b`` (lowest bit first)."""
        key = (like.dtype, str(like.device))
        table = self._tables.get(key)
        if table is None:
            bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
            table = self._tables[key] = (bits * 2 - 1).to(dtype=like.dtype, device=like.device)
        return table


def _padded(n: int) -> int:
    """``n`` rounded up to whole 64-bit words (the Rademacher fill writes whole words)."""
    return -(-n // _WORD_BITS) * _WORD_BITS
