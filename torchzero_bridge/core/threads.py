"""Thread-pool limits while a solver runs.

On small machines numpy's BLAS threads and torch's OpenMP threads compete: a solver doing
small linear algebra between closure calls can slow the whole run many times over. While a
solve runs, :func:`limit_threads` caps numpy/scipy BLAS (and optionally torch) threads and
restores them afterwards.

Example:
    >>> from torchzero_bridge.core.threads import limit_threads
    >>> with limit_threads("auto"):
    ...     pass
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, Literal, Union

import torch

from torchzero_bridge._preload import preload

__all__ = ["ThreadsSpec", "check_threads", "limit_threads"]

ThreadsSpec = Union[int, Literal["auto"], None]


@contextlib.contextmanager
def limit_threads(threads: ThreadsSpec) -> Iterator[None]:
    """Limit BLAS/OpenMP threads for the duration of the block.

    Args:
        threads: ``"auto"`` (default in every wrapper) caps numpy/scipy BLAS at one thread
            and leaves torch alone; an int ``k`` caps numpy/scipy BLAS at one thread and
            torch at ``k`` threads; ``None`` changes nothing.

    Raises:
        ValueError: ``threads`` is not ``"auto"``, ``None`` or a positive int.
    """
    if check_threads(threads) is None:
        yield
        return
    old_torch = torch.get_num_threads()
    with _blas_controller().limit(limits=1, user_api="blas"):
        if isinstance(threads, int):
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if isinstance(threads, int):
                torch.set_num_threads(old_torch)


_controller: Any = None
_controller_modules = -1


def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, rescanned only after new imports.

    Scanning the process's shared libraries costs milliseconds; a library can only appear
    through an import, so the scan is redone when ``sys.modules`` has grown or shrunk.
    """
    global _controller, _controller_modules
    if _controller is None or len(sys.modules) != _controller_modules:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
        _controller_modules = len(sys.modules)
    return _controller


def check_threads(threads: ThreadsSpec) -> ThreadsSpec:
    """Return ``threads`` unchanged if valid.

    Raises:
        ValueError: not ``"auto"``, ``None`` or a positive int.
    """
    if threads is not None:
        preload("threadpoolctl")  # limit_threads needs it inside the step
    if threads is None or threads == "auto":
        return threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected 'auto', None or a positive int, got {threads!r}")
    return threads
