"""Shared pieces of the native torch zeroth-order optimizers: seeding and closure calls.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.common import CountedClosure, SeededRNG
    >>> rng = SeededRNG(seed=0)
    >>> a = torch.randn(3, generator=rng.get(torch.device("cpu")))
    >>> w = torch.ones(2, requires_grad=True)
    >>> CountedClosure(lambda backward=True: (w ** 2).sum(), "demo")()
    2.0
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from torchzero_bridge._checks import check_seed
from torchzero_bridge.core.closure import ClosureAdapter

__all__ = ["CountedClosure", "SeededRNG", "deferred_interrupts", "require_closure"]


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


def require_closure(closure: Callable[..., Any] | None, owner: str) -> Callable[..., Any]:
    """Return ``closure`` or raise a ``TypeError`` naming ``owner`` when it is missing."""
    if closure is None:
        raise TypeError(f"{owner}.step() needs a closure that re-evaluates the model and returns the loss")
    return closure


class CountedClosure:
    """Loss-only calls into a closure, counted, with non-finite losses recorded.

    Each call runs the closure once, loss only (``closure(backward=False)`` under ``no_grad``
    when accepted, else ``closure()``); the closure is inspected only once.

    Args:
        closure: the user's closure; ``None`` raises the :func:`require_closure` error.
        owner: class name used in that error.

    Attributes:
        count: closure runs so far (including one that raised).
        nonfinite: how many of them returned NaN or infinity.

    Example:
        >>> import torch
        >>> w = torch.ones(2)
        >>> f = CountedClosure(lambda backward=True: (w ** 2).sum(), "demo")
        >>> f(), f.count
        (2.0, 1)
    """

    def __init__(self, closure: Callable[..., Any] | None, owner: str) -> None:
        self.adapter = ClosureAdapter(require_closure(closure, owner))
        self.count = 0
        self.nonfinite = 0

    def __call__(self) -> float:
        self.count += 1  # a run that raises still counts
        value = self.adapter.value()
        if not math.isfinite(value):
            self.nonfinite += 1
        return value


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
