"""One registry row: an optimizer factory, its reference problem and its capability flags.

:mod:`torchzero_bridge.testing.registry` lists this package's optimizers as :class:`Entry` rows;
a third party describes its own optimizer with one and runs
:class:`~torchzero_bridge.testing.contract.OptimizerContract` on it.

Example:
    >>> import torch
    >>> from torchzero_bridge.testing.entry import Entry
    >>> from torchzero_bridge.testing.problems import Rosenbrock
    >>> e = Entry("SGD", lambda p: torch.optim.SGD(p, lr=1e-3), lambda: Rosenbrock([0.0], [0.0]), gradient=True)
    >>> e.whole_run, e.loss_at_answer
    (False, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from torchzero_bridge.testing.problems import make_closure

__all__ = ["Entry", "Factory", "logging_closure"]

Factory = Callable[..., torch.optim.Optimizer]


class Entry(NamedTuple):
    """One registered optimizer setup and what it can do (the contract suite skips by these flags).

    Attributes:
        name: unique id (the class name, or ``"Class[config]"``).
        factory: ``factory(params, **options)`` builds the optimizer over ``params`` (tensors or
            param-group dicts; seeded, small budget); ``options`` (``callback=``, ``timeout=``)
            go to the constructor, and only entries flagged for them receive any.
        problem: builds a fresh module; ``module()`` is the loss. Its parameters are two or more
            float64 tensors.
        gradient: the closure is asked for gradients (``closure(backward=True)``); else every
            evaluation is value-only.
        whole_run: one ``step`` is a whole solve (scipy, nevergrad, optuna); else one iteration.
        best_point: after every step the parameters hold the lowest loss of all closure runs so far.
        loss_at_answer: ``step`` returns the loss at the parameters it leaves (torch optimizers
            that update after the closure, like the estimators with ``opt=``, return the loss before).
        integers: integer and boolean tensors are optimized (else refused at construction).
        bounds: per-group ``bounds=(lo, hi)`` hold at the answer.
        batching: a :class:`~torchzero_bridge.BatchObjective` closure evaluates populations in one call
            and gives the same run as the plain closure.
        stochastic: the optimizer draws random numbers (its factory seeds them).
        callback: accepts ``callback=``; returning ``True`` stops the run cleanly.
        timeout: accepts ``timeout=`` seconds; the run stops cleanly after it.
        minimal: builds the optimizer over ``params`` with only its required arguments (for the
            check that its defaults are the solver's), or ``None``.
    """

    name: str
    factory: Factory
    problem: Callable[[], torch.nn.Module]
    gradient: bool = False
    whole_run: bool = False
    best_point: bool = False
    loss_at_answer: bool = True
    integers: bool = False
    bounds: bool = False
    batching: bool = False
    stochastic: bool = False
    callback: bool = False
    timeout: bool = False
    minimal: Factory | None = None


def logging_closure(
    model: torch.nn.Module, zero_grad: Callable[[], None], log: list[torch.Tensor]
) -> Callable[..., torch.Tensor]:
    """A ``backward``-aware closure returning ``model()`` that appends the evaluated point to ``log``.

    Each entry of ``log`` is a float64 copy of all parameters, flattened and concatenated, so
    two runs can be compared evaluation by evaluation.

    Example:
        >>> from torchzero_bridge.testing.functions import Sphere
        >>> model = Sphere([0.9, -0.4], [0.3])
        >>> log = []
        >>> _ = logging_closure(model, lambda: None, log)(backward=False)
        >>> log[0].tolist()
        [0.9, -0.4, 0.3]
    """
    inner = make_closure(model, zero_grad)

    def closure(backward: bool = True) -> torch.Tensor:
        log.append(torch.cat([p.detach().reshape(-1).to(torch.float64) for p in model.parameters()]))
        return inner(backward)

    return closure
