"""Walk: move parameters in place along a regenerated direction through a stencil and back, exactly.

A randomized estimator evaluates the loss at ``x + t_1 a d``, ``x + t_2 a d``, ... and must end
at ``x`` bit for bit. Each pass of a walk undoes the previous point's move and makes the next
one (``p -= t_1 a d; p += t_2 a d``), so every move is added and later subtracted as the same
product, and rounds back to ``x`` except where the perturbed value lands in a coarser binade
and loses its low bits (4-9% of float32 weights of size 0.01-0.03 at ``a = 1e-3``; a direct jump
``(t_2 - t_1) a d`` would get about half of them wrong). A :class:`Walk` therefore, in its first
pass and one piece of one tensor at a time, runs the whole chain of moves on a scratch copy of
the piece and compares the end point with the start as bit patterns (so ``-0.0`` is told from
``0.0``). For every entry that would come back wrong it records the difference of the two bit
patterns, which is small (a few units in the last place) and kept in one byte; the rare entry
whose difference does not fit (one far smaller than ``a``, whose bits are lost in ``x ± a d``)
keeps its start value instead. Positions take 16 bits each (the block of ``2**16`` entries is
known from where its positions start in the sorted list); a piece is copied whole when that is
smaller. The real moves repeat the same operations on the same values, so they end at the
same point, and the corrections are added to the bit patterns at the end: the parameters return
to ``x`` bit for bit, in every dtype.

With ``backup`` (buffers free until the way back, like an estimator's ``.grad`` with one
sample) none of this is needed: the first pass copies the start there and the last copies it
back.

Memory: one scratch piece of at most :data:`~torchzero_bridge.zeroth_order.directions.CHUNK`
entries (the direction) plus one for the simulated chain, and what is kept: three bytes per
entry that would come back wrong (for the float32 weights of a transformer at ``a = 1e-3``, ~8%
of the entries: ~6% of the parameters' bytes); nothing with ``backup``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from torchzero_bridge.zeroth_order.common import deferred_interrupts
from torchzero_bridge.zeroth_order.directions import CHUNK, DirectionSampler, piece_of

__all__ = ["Walk"]

After = Callable[[int, "slice | None", torch.Tensor], object]
"""``after(i, sl, d)``: called on the last pass with tensor ``i``'s piece ``sl`` and its direction."""

Kept = tuple[tuple[torch.Tensor, list[int]] | None, torch.Tensor, torch.Tensor | None, torch.Tensor | None]
"""How a piece comes back: ``((positions, block starts), corrections, far positions, far values)``, or
``(None, copy, None, None)``."""


class Walk:
    """Moves ``tensors`` in place to ``x + t·steps[i]·d`` for each stencil point ``t``, then back to ``x``.

    Args:
        tensors: real floating tensors, moved in place.
        steps: the step ``a`` of each tensor (``h`` of its group).
        points: the stencil points ``t`` in evaluation order (nonzero).
        sampler: generates the direction.
        seed: the sample seed of the direction.
        scale: the sampler's scale (see :meth:`DirectionSampler.sphere_scale`).
        backup: tensors shaped and strided like ``tensors`` that are free until the last pass
            (an estimator's ``.grad`` with one sample): the start is copied there on the first
            pass and copied back on the last, instead of simulating the chain and keeping the
            entries that would come back wrong. ``after`` may then overwrite them.
    """

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        steps: Sequence[float],
        points: Sequence[float],
        sampler: DirectionSampler,
        seed: int,
        scale: float = 1.0,
        backup: Sequence[torch.Tensor] | None = None,
    ) -> None:
        self.tensors = list(tensors)
        self.backup = None if backup is None else list(backup)
        self.steps = [float(a) for a in steps]
        pts = [float(t) for t in points]
        # each pass undoes the previous point's move and makes the next one: a move and its undo
        # are the same product ``t·a·d`` added and subtracted, which round back to ``x`` except
        # where the perturbed value lands in a coarser binade (a jump ``(t_2 - t_1)·a·d`` would not)
        self.moves: list[list[float]] = [[pts[0]]] + [[-a, b] for a, b in itertools.pairwise(pts)] + [[-pts[-1]]]
        self.sampler, self.seed, self.scale = sampler, seed, scale
        self.passes = 0
        """Passes completed by :meth:`advance` (the walk is at ``points[passes - 1]``)."""
        self._first: list[int] = []  # index of each tensor's first piece, in generation order
        self._count: list[int] = []  # pieces per tensor
        for t in self.tensors:
            self._first.append(sum(self._count))
            self._count.append(0 if t.numel() == 0 else -(-t.numel() // CHUNK) if t.is_contiguous() else 1)
        self._pos = [0] * sum(self._count)  # per piece: moves applied so far
        self._kept: dict[int, Kept] = {}
        self._blocks: dict[tuple[torch.dtype, str], tuple[torch.Tensor, int]] = {}
        self._entries = sum(t.numel() for t in self.tensors)

    def advance(self) -> None:
        """Move every tensor to the next stencil point (one pass)."""
        if self.passes >= len(self.moves) - 1:
            raise RuntimeError("Walk.advance: the walk is already at its last point")
        with deferred_interrupts():
            self._pass(self.passes, None)
            self.passes += 1

    def finish(self, after: After | None = None) -> None:
        """Bring every tensor back to its start exactly.

        If a pass fails (an exception inside it), the pieces it did not reach are brought back
        (and given ``after``) by one more pass before the exception propagates: the way back,
        and what rides on it, is done for all tensors or, if that also fails, for as many as
        possible.

        Args:
            after: called for every piece on the way back, once the piece is restored; only
                when the walk reached its last point (a normal finish, not after an exception).
        """
        last = len(self.moves) - 1
        if self.passes < last:
            after = None
        with deferred_interrupts():
            try:
                self._return(after)
            except BaseException:
                self._return(after)  # once more, for the pieces the failed pass did not reach
                raise
            self.passes = last + 1
            self._blocks.clear()

    def _return(self, after: After | None) -> None:
        last = len(self.moves) - 1
        started = [p for p in self._pos if p > 0]
        for step in range(min(started, default=last + 1), last + 1):
            self._pass(step, after if step == last else None)

    # ------------------------------------------------------------------ internals
    def _piece(self, i: int, sl: slice | None) -> int:
        return self._first[i] + (0 if sl is None else sl.start // CHUNK)

    def _pass(self, step: int, after: After | None) -> None:
        """Apply move ``step`` to every piece that has applied ``step`` moves; restore after the last."""
        last = len(self.moves) - 1
        moves = self.moves[step]
        todo = {i for i, (a, n) in enumerate(zip(self._first, self._count)) if step in self._pos[a : a + n]}
        scratch: list[torch.Tensor | None] = []
        for i, sl, d in self.sampler.pieces(self.seed, self.tensors, self.scale, only=todo.__contains__):
            k = self._piece(i, sl)
            if self._pos[k] != step:
                continue
            p = piece_of(self.tensors[i], sl)
            a = self.steps[i]
            if step == 0:
                if self.backup is None:
                    self._keep(k, p, d, a, scratch)
                else:
                    piece_of(self.backup[i], sl).copy_(p)
            if step == last and self.backup is not None:
                p.copy_(piece_of(self.backup[i], sl))  # back to the start by copy: no moves to make
            else:
                for mv in moves:
                    p.add_(d, alpha=mv * a)
                if step == last:
                    kept = self._kept.pop(k, None)
                    if kept is not None:
                        _restore(p, kept)
            self._pos[k] = step + 1
            if after is not None:
                after(i, sl, d)

    def _keep(self, k: int, p: torch.Tensor, d: torch.Tensor, a: float, scratch: list[torch.Tensor | None]) -> None:
        """Run the whole chain on a copy of piece ``k``; record how to fix every entry it brings back wrong."""
        if not _dense(p):
            # an irregular layout: the chain on a scratch copy may round differently, so the
            # piece is restored by copy
            self._kept[k] = (None, p.clone(), None, None)
            return
        n = p.numel()
        if p.is_contiguous():
            sim = _reused(scratch, 0, p.dtype, p.device, n).view(p.shape)
        else:
            sim = torch.empty_like(p)
        sim.copy_(p)
        for moves in self.moves:
            for mv in moves:
                sim.add_(d, alpha=mv * a)
        # the correction of each entry as a difference of bit patterns (zero where the chain comes
        # back exactly; an integer compare also tells -0.0 from 0.0), written over the simulation
        ints = _INTS[p.element_size()]
        diff = sim.view(ints)
        torch.sub(p.view(ints), diff, out=diff)
        flags = _reused(scratch, 1, torch.bool, p.device, n)
        flags.view(p.shape).copy_(diff)  # nonzero -> True
        pos = _nonzero(flags)
        count = pos.numel()
        if count == 0:
            return
        corr = torch.take(diff, pos)
        far = _far(corr)  # a correction beyond one byte (a far smaller entry, or a sign change)
        size = p.element_size()
        if 3 * count + far.numel() * (size + 8) >= n * size:
            self._kept[k] = (None, p.clone(), None, None)  # positions and corrections would cost more than a copy
            return
        far_values = None
        if far.numel():
            corr[far] = 0
            far = pos[far]
            far_values = torch.take(p, far)
        # positions in 16 bits: the high bits are the block of 2**16 entries, known from where
        # each block's positions start in the sorted list
        blocks = list(range(_BLOCK, n, _BLOCK))
        starts = torch.searchsorted(pos, torch.tensor(blocks, device=pos.device)).tolist() if blocks else []
        low = self._arena(p.device, torch.int16, count).copy_(pos)
        small = self._arena(p.device, torch.int8, count).copy_(corr)
        self._kept[k] = ((low, starts), small, None if far_values is None else far, far_values)

    def _arena(self, device: torch.device, dtype: torch.dtype, n: int) -> torch.Tensor:
        """``n`` entries for kept data, cut from blocks of ``4·CHUNK`` bytes (less for small walks).

        Many small kept tensors allocated between a pass's freed temporaries fragment the heap
        (measured: 250 MB of resident memory for 16 MB kept on a 36M-parameter model); a few
        large blocks do not.
        """
        key = (dtype, str(device))
        block, used = self._blocks.get(key, (None, 0))
        if block is None or used + n > block.numel():
            size = max(n, min(CHUNK * 4 // block_size(dtype), self._entries // 16))
            block, used = torch.empty(size, dtype=dtype, device=device), 0
        self._blocks[key] = (block, used + n)
        return block[used : used + n]


def block_size(dtype: torch.dtype) -> int:
    """Bytes per entry of ``dtype``."""
    return torch.empty(0, dtype=dtype).element_size()


def _reused(
    scratch: list[torch.Tensor | None], slot: int, dtype: torch.dtype, device: torch.device, n: int
) -> torch.Tensor:
    """Slot ``slot`` of a pass's scratch list: at least ``n`` entries of ``dtype``, grown when needed."""
    while len(scratch) <= slot:
        scratch.append(None)
    buf = scratch[slot]
    if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
        buf = scratch[slot] = torch.empty(n, dtype=dtype, device=device)
    return buf[:n]


_BLOCK = 1 << 16  # entries addressed by a 16-bit position
_SMALL = 127  # the largest correction kept in one byte
_INTS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # bit patterns by entry size


def _restore(p: torch.Tensor, kept: Kept) -> None:
    """Fix the entries of piece ``p`` that the arithmetic way back brought back wrong."""
    where, values, far, far_values = kept
    if where is None:
        p.copy_(values)
        return
    low, starts = where
    pos = low.to(torch.int64).bitwise_and_(_BLOCK - 1)
    for first in starts:
        pos[first:].add_(_BLOCK)  # each block boundary passed adds 2**16
    ints = _INTS[p.element_size()]
    if p.is_contiguous():
        p.view(ints).view(-1).scatter_add_(0, pos, values.to(ints))
    else:
        p.view(ints).put_(pos, values.to(ints), accumulate=True)
    if far is not None and far_values is not None:
        p.put_(far, far_values)


def _nonzero(flags: torch.Tensor) -> torch.Tensor:
    """Positions (int64) of the true entries of the 1-D bool tensor ``flags``.

    On the CPU through numpy's ``flatnonzero`` (about 3x faster than ``torch.nonzero`` there).
    """
    if flags.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(flags.numpy()))
    return torch.nonzero(flags).view(-1)


def _far(corr: torch.Tensor) -> torch.Tensor:
    """Indices (int64) of the corrections outside ``[-127, 127]``: ``corr + 127`` read unsigned is above 254."""
    if corr.device.type == "cpu":
        shifted = corr.numpy() + np.array(_SMALL, dtype=corr.numpy().dtype)
        return torch.from_numpy(np.flatnonzero(shifted.view(shifted.dtype.str.replace("i", "u")) > 2 * _SMALL))
    return torch.nonzero((corr > _SMALL) | (corr < -_SMALL)).view(-1)


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` is a permutation of a contiguous tensor (``torch.empty_like`` keeps its strides).

    Elementwise operations then traverse ``t`` and a scratch copy alike, and round alike.
    """
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expected:
            return False
        expected = stride * size
    return True
