"""A throttled progress bar showing evaluations and the best loss (tqdm, optional).

Example:
    >>> from torchzero_bridge.core.progress import Progress
    >>> bar = Progress(enabled=False, desc="BFGS")
    >>> bar.update(1.5)
    >>> bar.close()
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

__all__ = ["Progress"]


class Progress:
    """Counts evaluations and tracks the best loss; draws a tqdm bar when enabled.

    Args:
        enabled: draw a bar (requires ``tqdm``).
        desc: label shown left of the bar.
        total: expected number of evaluations, when known.
    """

    def __init__(self, enabled: bool, desc: str = "", total: int | None = None) -> None:
        self.best = math.inf
        self._bar: Any = None
        self._next_postfix = 0.0
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError as e:  # pragma: no cover - tqdm is a dependency
                raise ImportError("progress=True needs tqdm: pip install tqdm") from e
            self._bar = tqdm(total=total, desc=desc, unit="eval", leave=True)

    def update(self, loss: float, count: int = 1) -> None:
        """Record ``count`` evaluations (default one) whose lowest loss is ``loss``."""
        if loss < self.best:
            self.best = loss
        bar = self._bar
        if bar is None:
            return
        bar.update(count)
        now = time.perf_counter()
        if now >= self._next_postfix:
            bar.set_postfix(best=f"{self.best:.6g}", refresh=False)
            self._next_postfix = now + 0.2

    def update_many(self, losses: np.ndarray) -> None:
        """Record ``len(losses)`` evaluations at once (finite losses)."""
        if len(losses):
            self.update(float(np.min(losses)), len(losses))

    def close(self) -> None:
        """Finish the bar (shows the final best loss)."""
        if self._bar is not None:
            self._bar.set_postfix(best=f"{self.best:.6g}", refresh=False)
            self._bar.close()
            self._bar = None
