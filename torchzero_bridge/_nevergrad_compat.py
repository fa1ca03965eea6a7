"""Two guards that make nevergrad 1.0.x safe to drive from this library.

1. **numpy >= 2.4 and MetaModel.** nevergrad's ``learn_on_k_best`` (used by ``MetaModel``,
   which ``NGOpt`` picks for small dimensions) converts the one-element array returned by a
   scikit-learn model to a Python float with ``float(array)``. numpy 2.4 turned that
   long-deprecated conversion into a ``TypeError``, so the default optimizer crashes a few
   dozen evaluations into a run. :func:`patch_metamodel_scalar` gives that one module a
   ``float`` that first unwraps one-element arrays, which is exactly what numpy < 2.4 did;
   every other argument goes to the builtin unchanged. The patch is applied only when the
   installed numpy refuses the conversion.
2. **Threads that block interpreter exit.** Optimizers that nevergrad recasts from a
   callback-style solver (``Powell``, ``Cobyla``, ``SQP`` and the ``Powell`` run inside
   ``MetaModel``) run that solver in a non-daemon thread that waits for the next ``tell``.
   A run that is left unfinished (a step that spends part of the budget, an exception)
   therefore keeps the interpreter from exiting. :func:`install_exit_guard` registers a hook
   that runs before Python joins its threads and tells every such waiting thread to stop.

Example:
    >>> from torchzero_bridge._nevergrad_compat import unwrap_scalar
    >>> import numpy as np
    >>> unwrap_scalar(np.array([2.5]))
    2.5
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["apply_guards", "install_exit_guard", "patch_metamodel_scalar", "unwrap_scalar"]

_builtin_float = float
_exit_guard_installed = False


def unwrap_scalar(value: Any) -> float:
    """``float(value)``, also for one-element arrays of any shape (numpy < 2.4 behaviour)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return _builtin_float(value.reshape(()))
    return _builtin_float(value)


def numpy_refuses_size1_float() -> bool:
    """True when this numpy raises on ``float(np.ones(1))`` (numpy >= 2.4)."""
    try:
        _builtin_float(np.ones(1))
    except TypeError:
        return True
    return False


def patch_metamodel_scalar() -> bool:
    """Give ``nevergrad.optimization.metamodel`` a ``float`` that accepts one-element arrays.

    Returns:
        True when the patch is in place (applied now or before), False when this numpy
        does not need it.
    """
    if not numpy_refuses_size1_float():
        return False
    from nevergrad.optimization import metamodel

    if getattr(metamodel, "float", None) is not unwrap_scalar:
        metamodel.float = unwrap_scalar  # shadows the builtin in that module only
    return True


def _stop_waiting_solver_threads() -> None:
    try:
        from nevergrad.optimization.recaster import _MessagingThread
    except ImportError:  # pragma: no cover - nevergrad layout changed
        return
    for thread in threading.enumerate():
        if isinstance(thread, _MessagingThread) and thread.is_alive():
            thread.stop()


def install_exit_guard() -> bool:
    """Stop nevergrad's waiting solver threads just before the interpreter joins threads.

    Returns:
        True when the hook is registered (now or before); False when this Python has no
        pre-join hook (then an unfinished recast optimizer can still delay exit).
    """
    global _exit_guard_installed
    if _exit_guard_installed:
        return True
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - CPython 3.9+ has it
        return False
    try:
        register(_stop_waiting_solver_threads)
    except RuntimeError:  # already shutting down
        return False
    _exit_guard_installed = True
    return True


def apply_guards() -> None:
    """Apply both guards (idempotent); call after importing nevergrad."""
    patch_metamodel_scalar()
    install_exit_guard()
