"""A recording, fault-injecting closure and the checks on where a run left the parameters.

Shared by the contract suite (:mod:`torchzero_bridge.testing.contract`) and the fault-injection
tests: :class:`Recorder` keeps every evaluated point with its loss, ``backward`` flag and grad
mode, and can raise, interrupt or return NaN at chosen calls; :func:`check_safe_point` says
whether the parameters ended where DESIGN's promises 3 and 9 allow.

Example:
    >>> from torchzero_bridge.testing.functions import Sphere
    >>> model = Sphere([1.0], [2.0])
    >>> rec = Recorder(model, lambda: None, lambda k: "nan" if k == 2 else None)
    >>> float(rec(backward=False)), math.isnan(float(rec(backward=False))), rec.losses[0]
    (5.0, True, 5.0)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from torchzero_bridge.testing.entry import Entry

__all__ = ["Boom", "Recorder", "RunResult", "check_grad_at_params", "check_safe_point", "flat", "run_entry"]

Fault = Callable[[int], "str | None"]


class Boom(RuntimeError):
    """The injected closure error."""


def flat(model: torch.nn.Module) -> torch.Tensor:
    """All parameters of ``model`` as one float64 vector (a copy).

    Example:
        >>> from torchzero_bridge.testing.functions import Sphere
        >>> flat(Sphere([1.0], [2.0])).tolist()
        [1.0, 2.0]
    """
    return torch.cat([p.detach().reshape(-1).to(torch.float64).cpu() for p in model.parameters()])


class Recorder:
    """A ``backward``-aware closure returning ``model()`` that records each run and injects faults.

    Args:
        model: the problem module (``model()`` is the loss).
        zero_grad: called before each evaluation (the optimizer's ``zero_grad``).
        fault: ``fault(k)`` for the ``k``-th call (from 1): ``None``, ``"raise"`` (:class:`Boom`),
            ``"interrupt"`` (``KeyboardInterrupt``) or ``"nan"`` (a NaN loss).
        delay: seconds to sleep in every call (for timeouts).

    Attributes:
        points: the evaluated points (float64 copies), one per completed call.
        losses: their losses (appended before the point: an interrupt between the two appends
            never leaves a point without its loss).
        calls: ``(backward, grad mode, dtypes, devices)`` of every call, also the faulty ones.
    """

    def __init__(
        self, model: torch.nn.Module, zero_grad: Callable[[], None], fault: Fault | None = None, delay: float = 0.0
    ) -> None:
        self.model, self.zero_grad, self.fault, self.delay = model, zero_grad, fault, delay
        self.points: list[torch.Tensor] = []
        self.losses: list[float] = []
        self.calls: list[tuple[bool, bool, tuple[torch.dtype, ...], tuple[torch.device, ...]]] = []

    def __call__(self, backward: bool = True) -> torch.Tensor:
        params = list(self.model.parameters())
        self.calls.append(
            (backward, torch.is_grad_enabled(), tuple(p.dtype for p in params), tuple(p.device for p in params))
        )
        what = self.fault(len(self.calls)) if self.fault is not None else None
        x = flat(self.model)
        if what == "raise":
            raise Boom(f"injected at call {len(self.calls)}")
        if what == "interrupt":
            raise KeyboardInterrupt(f"injected at call {len(self.calls)}")
        if self.delay:
            time.sleep(self.delay)
        self.zero_grad()
        loss = self.model()
        if what == "nan":
            loss = loss * math.nan
        value = float(loss)
        self.losses.append(value)
        self.points.append(x)
        if backward and torch.is_grad_enabled() and loss.requires_grad:
            loss.backward()
        return loss


class RunResult:
    """What :func:`run_entry` leaves: the model, optimizer, recorder, start point and step records.

    Attributes:
        snapshots: the parameters at the start of each step, and after the last one when the run finished.
        returned: each completed step's returned loss.
        per_step: how many closure calls each step started with (index into ``rec.calls``).
        raised: the exception that ended the run, or ``None``.
    """

    def __init__(self, model: torch.nn.Module, opt: Any, rec: Recorder) -> None:
        self.model, self.opt, self.rec = model, opt, rec
        self.start = flat(model)
        self.snapshots: list[torch.Tensor] = []
        self.returned: list[float] = []
        self.per_step: list[int] = []
        self.raised: BaseException | None = None


def run_entry(
    e: Entry,
    steps: int,
    fault: Fault | None = None,
    *,
    delay: float = 0.0,
    model: torch.nn.Module | None = None,
    catch: tuple[type[BaseException], ...] = (Boom, KeyboardInterrupt),
    **options: Any,
) -> RunResult:
    """Build the entry (``options`` go to its factory), step it ``steps`` times with a :class:`Recorder`.

    An exception in ``catch`` ends the run and is kept in ``raised``; warnings are silenced.

    Example:
        >>> from torchzero_bridge.testing.registry import entry
        >>> out = run_entry(entry("RandomSearch"), 2)
        >>> len(out.returned), out.raised is None
        (2, True)
    """
    model = e.problem() if model is None else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt: Any = e.factory(model.parameters(), **options)
        out = RunResult(model, opt, Recorder(model, opt.zero_grad, fault, delay))
        try:
            for _ in range(steps):
                out.snapshots.append(flat(model))
                out.per_step.append(len(out.rec.calls))
                out.returned.append(float(opt.step(out.rec)))
            out.snapshots.append(flat(model))  # a finished run's answer is no trial point, even when it was evaluated
        except catch as exc:
            out.raised = exc
    return out


def check_safe_point(e: Entry, out: RunResult, lenient: bool = False) -> None:
    """Assert the parameters sit where a run may leave them after a fault (DESIGN promises 3 and 9).

    Finite, and for whole-run and best-point optimizers: at the start or at an evaluated point
    whose loss is the best finite loss seen, with ``p.grad`` ``None`` or matching the parameters;
    for other iterative optimizers (estimators with an inner ``opt``): not at a perturbed trial
    point, and ``p.grad`` ``None`` or finite. ``lenient``: the last recorded loss may not have
    reached the optimizer (an interrupt right after the closure returned), and a step that answers
    with an evaluated candidate (``loss_at_answer``) may have chosen it before the interrupt.
    """
    x, rec = flat(out.model), out.rec
    assert torch.isfinite(x).all(), f"{e.name}: parameters are not finite: {x.tolist()}"
    same = [i for i, p in enumerate(rec.points) if torch.equal(p, x)]
    if e.whole_run or e.best_point:
        finite = [f for f in rec.losses if math.isfinite(f)]
        if not torch.equal(x, out.start):
            assert same, f"{e.name}: parameters {x.tolist()} are neither the start nor an evaluated point"
            best = {min(finite)} if finite else set()
            earlier = [f for f in rec.losses[:-1] if math.isfinite(f)]
            if lenient and earlier:
                best.add(min(earlier))
            assert min(rec.losses[i] for i in same) in best, (
                f"{e.name}: parameters at loss {[rec.losses[i] for i in same]}, best finite seen {best}"
            )
        check_grad_at_params(e, out.model)
    else:
        snaps = out.snapshots
        trial = [p for p in rec.points if not any(torch.equal(p, s) for s in snaps)]
        last = snaps[-1] if snaps else out.start
        if lenient and e.loss_at_answer and same:
            # a step that answers with one of its own evaluated candidates may have finished
            # choosing it when the interrupt landed (after its body, before the step returned)
            since = next((i for i in range(len(rec.points) - 1, -1, -1) if torch.equal(rec.points[i], last)), -1)
            if max(same) > since:
                return check_grad_finite(e, out.model)
        assert torch.equal(x, last) or not any(torch.equal(x, p) for p in trial), (
            f"{e.name}: parameters left at a perturbed trial point {x.tolist()}"
        )
        check_grad_finite(e, out.model)


def check_grad_finite(e: Entry, model: torch.nn.Module) -> None:
    """Assert every ``p.grad`` is ``None`` or finite."""
    for p in model.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{e.name}: non-finite p.grad {p.grad}"


def check_grad_at_params(e: Entry, model: torch.nn.Module) -> None:
    """Assert every ``p.grad`` is ``None``, or all are the autograd gradient at the parameters."""
    params = list(model.parameters())
    grads = [p.grad for p in params]
    if all(g is None for g in grads):
        return
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]
    try:
        for p in params:
            p.grad = None
        with torch.enable_grad():
            truth = torch.autograd.grad(model(), [p for p in params if p.requires_grad], allow_unused=True)
    finally:
        for p, g, s in zip(params, grads, saved):
            p.grad = g
            with torch.no_grad():
                p.copy_(s)
    for g, t in zip([g for p, g in zip(params, grads) if p.requires_grad], truth):
        assert g is not None, f"{e.name}: p.grad is None for some parameters only"
        assert t is not None and torch.allclose(g.to(torch.float64), t.to(torch.float64), rtol=1e-5, atol=1e-7), (
            f"{e.name}: p.grad {g} does not match the parameters (gradient there {t})"
        )
