"""Closure conventions: how the library calls a user's closure.

Three kinds of closure are understood:

* a **plain** torch closure (``zero_grad``, forward, ``backward``, ``return loss``);
* a closure that **accepts** ``backward`` (``def closure(backward=True)``): value-only
  evaluations skip the backward pass and run under ``torch.no_grad()``, and exact
  Hessian-vector products are built by double backward;
* a **gngdb-style closure object** with a ``.model`` attribute and a static
  ``.loss(model)`` method. As in gngdb's pytorch-minimize, every value and gradient comes
  from calling the object (``closure()``, or ``closure(backward=...)`` when its ``__call__``
  accepts ``backward``), so whatever ``__call__`` records happens at every evaluation;
  ``.loss(model)`` is used only to build the autograd graph of exact Hessians and
  Hessian-vector products.

Example:
    >>> import torch
    >>> from torchzero_bridge.core.closure import ClosureAdapter
    >>> w = torch.ones(3, requires_grad=True)
    >>> def closure(backward=True):
    ...     loss = (w ** 2).sum()
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> ClosureAdapter(closure).value()
    3.0
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from torchzero_bridge.core.buffers import RunningStatsWatch, warn_running_stats
from torchzero_bridge.core.record import EvalRecord
from torchzero_bridge.errors import ClosureError

__all__ = ["ClosureAdapter", "CountedClosure", "accepts_backward", "loss_to_float", "require_closure"]


def require_closure(closure: Callable[..., Any] | None, owner: str) -> Callable[..., Any]:
    """Return ``closure`` or raise a ``TypeError`` naming ``owner`` when it is missing.

    Example:
        >>> require_closure(None, "SPSA")
        Traceback (most recent call last):
        ...
        TypeError: SPSA.step() needs a closure that re-evaluates the model and returns the loss
    """
    if closure is None:
        raise TypeError(f"{owner}.step() needs a closure that re-evaluates the model and returns the loss")
    return closure


def accepts_backward(closure: Callable[..., Any]) -> bool:
    """True when ``closure`` takes a ``backward`` argument (or ``**kwargs``)."""
    try:
        sig = inspect.signature(closure)
    except (TypeError, ValueError):
        return False
    for p in sig.parameters.values():
        if p.name == "backward" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            return True
        if p.kind is p.VAR_KEYWORD:
            return True
    return False


def loss_to_float(loss: Any) -> float:
    """Convert a closure's return value to a Python float.

    Raises:
        ClosureError: ``None``, a tensor with more than one element, a complex value, or
            something that is not a number.
    """
    if type(loss) is float:
        return loss
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ClosureError(
                f"the closure must return a scalar loss; got a tensor of shape {tuple(loss.shape)} "
                "(reduce it, e.g. with .mean() or .sum())"
            )
        if loss.is_complex():
            raise ClosureError("the closure must return a real scalar loss; got a complex tensor")
        return float(loss.item())
    if loss is None:
        raise ClosureError("the closure returned None; it must return the loss (a scalar tensor or float)")
    if isinstance(loss, bool) or (not isinstance(loss, (int, float)) and not hasattr(loss, "__float__")):
        raise ClosureError(f"the closure must return a scalar loss; got {type(loss).__name__}")
    if isinstance(loss, complex):
        raise ClosureError("the closure must return a real scalar loss; got a complex number")
    try:
        return float(loss)
    except (TypeError, ValueError):
        raise ClosureError(f"the closure must return a scalar loss; got {type(loss).__name__}") from None


class ClosureAdapter:
    """Uniform calls into any supported closure.

    Args:
        closure: the user's closure (plain, ``backward``-aware, or a gngdb-style object).

    Attributes:
        is_object: a gngdb-style closure object (``.model`` and ``.loss(model)``).
        accepts_backward: the closure (for an object, its ``__call__``) can skip its backward pass.
        has_graph: the loss can be obtained with its autograd graph and no backward pass
            (needed for exact Hessian-vector products): from ``.loss(model)`` for an object,
            else from ``closure(backward=False)``.
    """

    def __init__(self, closure: Callable[..., Any]) -> None:
        if closure is None or not callable(closure):
            raise TypeError("step() needs a closure: a callable that re-evaluates the model and returns the loss")
        self.closure = closure
        self.is_object = hasattr(closure, "model") and callable(getattr(closure, "loss", None))
        self.accepts_backward = accepts_backward(closure)
        self.has_graph = self.accepts_backward or self.is_object
        self._watched = False

    def value(self) -> float:
        """Loss only: ``closure(backward=False)`` under ``no_grad`` when accepted, else ``closure()``."""
        if not self._watched:
            return self._first_call(self.value)
        if self.accepts_backward:
            if not torch.is_grad_enabled():  # a solver loop already runs under no_grad
                return loss_to_float(self.closure(backward=False))
            with torch.no_grad():
                return loss_to_float(self.closure(backward=False))
        with torch.enable_grad():
            return loss_to_float(self.closure())

    def value_and_backward(self) -> float:
        """Loss with a backward pass; the gradients land in each parameter's ``.grad``."""
        if not self._watched:
            return self._first_call(self.value_and_backward)
        with torch.enable_grad():
            if self.accepts_backward:
                return loss_to_float(self.closure(backward=True))
            return loss_to_float(self.closure())

    def _first_call(self, evaluate: Callable[[], float]) -> float:
        """The first evaluation, watched for running statistics (see :mod:`~torchzero_bridge.core.buffers`)."""
        self._watched = True
        with RunningStatsWatch() as watch:
            value = evaluate()
        if watch.found:
            warn_running_stats(watch.found)
        return value

    def loss_tensor(self) -> Any:
        """The loss as the closure returns it, no backward pass, in the current grad mode.

        ``.loss(model)`` for a closure object, else ``closure(backward=False)`` (forward-mode AD
        reads the tangent of this value).
        """
        if self.is_object:
            return self.closure.loss(self.closure.model)  # type: ignore[attr-defined]
        return self.closure(backward=False)

    def observed(self, on_loss: Callable[[Any], None]) -> Callable[..., Any]:
        """A closure of the same convention that runs this one and hands each loss to ``on_loss``.

        For optimizers stepped by the library with the user's closure (a swarm's members): every
        run they make is seen. ``backward`` is passed on when the closure accepts it.
        """
        closure = self.closure

        if self.accepts_backward:

            def with_backward(backward: bool = True) -> Any:
                loss = closure(backward=backward)
                on_loss(loss)
                return loss

            return with_backward

        def plain() -> Any:
            loss = closure()
            on_loss(loss)
            return loss

        return plain

    def graph(self) -> torch.Tensor:
        """The loss tensor with its autograd graph, no backward pass run.

        For a closure object this is ``.loss(model)`` (the object itself is not called);
        otherwise ``closure(backward=False)``.
        """
        with torch.enable_grad():
            if self.is_object:
                loss = self.closure.loss(self.closure.model)  # type: ignore[attr-defined]
            else:
                loss = self.closure(backward=False)
        if not isinstance(loss, torch.Tensor):
            raise ClosureError(
                "exact Hessian-vector products need the closure to return a tensor loss "
                f"connected to the parameters; got {type(loss).__name__}"
            )
        loss_to_float(loss)  # validates shape / dtype
        if not loss.requires_grad:
            raise ClosureError(
                "the loss does not depend on any parameter with requires_grad=True, so no "
                "gradient or Hessian can be computed"
            )
        return loss


class CountedClosure:
    """Loss-only calls into a closure, each counted in an :class:`~torchzero_bridge.core.record.EvalRecord`.

    Each call runs the closure once like :meth:`ClosureAdapter.value` and counts it (a run
    that raises counts too); a non-finite loss goes through the record's policy (by default
    ``"pass"``, counted and returned unchanged: gradient estimators report it once per step).

    Args:
        closure: the user's closure; ``None`` raises the :func:`require_closure` error.
        owner: class name used in messages.
        record: the record to count in (default: a fresh quiet one with policy ``"pass"``).

    Example:
        >>> import torch
        >>> w = torch.ones(2)
        >>> f = CountedClosure(lambda backward=True: (w ** 2).sum(), "demo")
        >>> f(), f.count, f.nonfinite
        (2.0, 1, 0)
    """

    def __init__(self, closure: Callable[..., Any] | None, owner: str, record: EvalRecord | None = None) -> None:
        self.adapter = ClosureAdapter(require_closure(closure, owner))
        self.record = EvalRecord(owner, nonfinite="pass", quiet=True) if record is None else record

    @property
    def count(self) -> int:
        """Closure runs so far (including one that raised)."""
        return self.record.nfev

    @property
    def nonfinite(self) -> int:
        """How many of them returned NaN or infinity."""
        return self.record.n_nonfinite

    def __call__(self) -> float:
        record = self.record
        record.state["nfev"] += 1  # a run that raises still counts
        return record.seen(self.adapter.value())
