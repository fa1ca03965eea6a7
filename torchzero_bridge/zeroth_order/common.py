"""Shared pieces of the native torch zeroth-order optimizers: seeding and interrupt-safe moves.

Closures are called only through :mod:`torchzero_bridge.core.closure`.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.common import SeededRNG
    >>> rng = SeededRNG(seed=0)
    >>> a = torch.randn(3, generator=rng.get(torch.device("cpu")))
    >>> a.shape
    torch.Size([3])
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import torch

from torchzero_bridge._checks import check_seed

__all__ = ["SeededRNG", "deferred_interrupts"]


class SeededRNG:
    """One ``torch.Generator`` per device, seeded reproducibly, with a saveable state.

    Args:
        seed: integer seed; ``None`` draws one from torch's global generator (so
            ``torch.manual_seed`` still makes runs reproducible).
        generator: use this generator for its device instead of creating one.

    Raises:
        TypeError: ``seed`` is not an int.
    """

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        check_seed(seed)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.seed = seed
        self._gens: dict[str, torch.Generator] = {}
        if generator is not None:
            self._gens[str(generator.device)] = generator

    def get(self, device: torch.device | str) -> torch.Generator:
        """The generator for ``device`` (created and seeded on first use)."""
        key = str(torch.device(device))
        gen = self._gens.get(key)
        if gen is None:
            gen = torch.Generator(device=key)
            gen.manual_seed(self.seed + len(self._gens))
            self._gens[key] = gen
        return gen

    def state_dict(self) -> dict[str, Any]:
        """Seed and every generator's state."""
        return {"seed": self.seed, "states": {k: g.get_state() for k, g in self._gens.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.seed = int(state["seed"])
        for key, st in state.get("states", {}).items():
            self.get(key).set_state(st)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back SIGINT while the block runs, then deliver it: a move of the parameters is never cut in half.

    In the main thread, while a Python SIGINT handler is installed (torch's default one raises
    ``KeyboardInterrupt``), a SIGINT arriving inside the block is recorded and the original
    handler is called when the block ends. Elsewhere (other threads, ``SIG_IGN``/``SIG_DFL``)
    the block runs unchanged. Exceptions raised inside the block propagate as usual.

    Example:
        >>> with deferred_interrupts():
        ...     x = 1 + 1
        >>> x
        2
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return
    caught: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(signal.SIGINT, caught[0])
