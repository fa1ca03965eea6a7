"""Running statistics that change while an optimizer evaluates: detected and reported once per module.

Optimizers in this package save, restore and move parameters only. A module that keeps running
statistics (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, the lazy variants, ``InstanceNorm*`` with
``track_running_stats=True``) updates its ``running_mean``/``running_var`` at every forward in
training mode, so a step that evaluates many trial points (a derivative-free search, a scipy
solve, a zeroth-order estimate) leaves statistics averaged over those trial points, and nothing
undoes them: neither the restore after an error nor the step's answer.

What is detected: while the *first* evaluation through a
:class:`~torchzero_bridge.core.closure.ClosureAdapter` runs (the first of a step; derivative-free
optimizers keep one adapter while the same closure is passed), a global forward pre-hook notes
every such module that runs a forward in training mode with ``track_running_stats=True``. Each
module found gets one :class:`~torchzero_bridge.errors.RunningStatsWarning` for the life of the
module (a second optimizer or step on the same model does not repeat it). What is not detected:
a module that only switches to training mode after that first evaluation, statistics updated
without a module call (``torch.nn.functional.batch_norm`` with running tensors of your own),
other buffers that change in training mode (e.g. ``spectral_norm``'s power-iteration vectors),
the batched population path (``BatchObjective``), whose evaluations do not call the closure,
and ``ForwardGradient``, which calls the closure under forward-mode AD itself.

Example:
    >>> import torch
    >>> from torchzero_bridge.core.buffers import RunningStatsWatch
    >>> bn = torch.nn.BatchNorm1d(3)
    >>> with RunningStatsWatch() as watch:
    ...     _ = bn(torch.randn(4, 3))
    >>> [type(m).__name__ for m in watch.found]
    ['BatchNorm1d']
"""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import Any

import torch
from torch.nn.modules.batchnorm import _NormBase

from torchzero_bridge._warn import warn_user
from torchzero_bridge.errors import RunningStatsWarning

__all__ = ["RunningStatsWatch", "updates_running_stats", "warn_running_stats"]

_warned: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def updates_running_stats(module: torch.nn.Module) -> bool:
    """Whether a forward of ``module`` now updates running statistics (training mode, tracked).

    Example:
        >>> import torch
        >>> bn = torch.nn.BatchNorm2d(2)
        >>> updates_running_stats(bn), updates_running_stats(bn.eval())
        (True, False)
    """
    return isinstance(module, _NormBase) and module.training and bool(module.track_running_stats)


class RunningStatsWatch:
    """Context manager: the modules that update running statistics in a forward while it is active.

    Attributes:
        found: such modules, in the order their first forward ran.
    """

    def __init__(self) -> None:
        self.found: list[torch.nn.Module] = []
        self._handle: Any = None

    def __enter__(self) -> RunningStatsWatch:
        def pre_hook(module: torch.nn.Module, args: Any) -> None:
            if updates_running_stats(module) and not any(m is module for m in self.found):
                self.found.append(module)

        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(pre_hook)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def warn_running_stats(modules: list[torch.nn.Module]) -> None:
    """One :class:`~torchzero_bridge.errors.RunningStatsWarning` naming the modules not warned about before.

    Example:
        >>> import warnings, torch
        >>> bn = torch.nn.BatchNorm1d(3)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_running_stats([bn]); warn_running_stats([bn])
        >>> len(caught)
        1
    """
    new = [m for m in modules if m not in _warned]
    if not new:
        return
    for m in new:
        _warned.add(m)
    names = ", ".join(sorted({type(m).__name__ for m in new}))
    warn_user(
        f"{len(new)} module(s) ({names}) ran in training mode while the optimizer evaluated the closure: "
        "their running statistics (running_mean/running_var) are updated at every trial evaluation and no "
        "step restores them. Put the model in eval() while this optimizer runs, or save and reload the "
        "buffers yourself (warned once per module)",
        RunningStatsWarning,
    )
