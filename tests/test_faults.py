"""Fault injection over every registered optimizer: closure errors, interrupts, NaN losses, real SIGINTs.

A recording closure keeps every evaluated point and the loss the optimizer was handed. After
each fault the parameters must be finite and:

* whole-run optimizers (scipy/nevergrad/optuna wrappers, derivative-free methods): at the start
  or at an evaluated point whose loss is the best finite loss seen;
* iterative gradient estimators (``opt=`` torch optimizer): at the point the failing step started
  from (the perturbation undone), never at a perturbed trial point;
* ``p.grad`` is ``None`` or, for whole-run optimizers, the autograd gradient at the parameters
  (for estimators: finite).

Run with ``python -m pytest -q -p no:cacheprovider tests/test_faults.py -rx`` (about a minute).
"""

from __future__ import annotations

import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from torchzero_bridge.core.base import BridgeOptimizer
from torchzero_bridge.testing.registry import ENTRIES, Entry
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # solver chatter and NonFiniteLossWarning by design
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

NAMES = [e.name for e in ENTRIES]
STEPS = 4  # steps of an iterative optimizer per run (a whole-run wrapper solves in its first)
XFAIL: dict[tuple[str, str], str] = {}


class Boom(RuntimeError):
    """The injected closure error."""


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in model.parameters()])


class Recorder:
    """A ``backward``-aware closure that records ``(x, loss)`` and injects one kind of fault."""

    def __init__(self, model: torch.nn.Module, zero_grad: Callable[[], None], fault: Callable[[int], str | None]):
        self.model, self.zero_grad, self.fault = model, zero_grad, fault
        self.points: list[torch.Tensor] = []
        self.losses: list[float] = []

    def __call__(self, backward: bool = True) -> torch.Tensor:
        k = len(self.points) + 1
        what = self.fault(k)
        x = _flat(self.model)
        if what == "raise":
            raise Boom(f"injected at call {k}")
        if what == "interrupt":
            raise KeyboardInterrupt(f"injected at call {k}")
        self.zero_grad()
        loss = self.model()
        if what == "nan":
            loss = loss * math.nan
        value = float(loss)
        # one append per list and the loss first: a SIGINT between them leaves a loss without a point
        # (never read), not a point without its loss
        self.losses.append(value)
        self.points.append(x)
        if backward and torch.is_grad_enabled():
            loss.backward()
        return loss


def _whole_run(opt: torch.optim.Optimizer) -> bool:
    return isinstance(opt, (BridgeOptimizer, DerivativeFreeOptimizer))


def _run(e: Entry, fault: Callable[[int], str | None]) -> tuple[Any, ...]:
    """Run the entry under ``fault``; returns what the checks need."""
    model = e.problem()
    opt = e.factory(model.parameters())
    rec = Recorder(model, opt.zero_grad, fault)
    start = _flat(model)
    snapshots: list[torch.Tensor] = []
    raised: BaseException | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for _ in range(1 if isinstance(opt, BridgeOptimizer) else STEPS):
                snapshots.append(_flat(model))
                opt.step(rec)  # type: ignore[arg-type]
            snapshots.append(_flat(model))  # a finished run's answer is no trial point, even when it was evaluated
        except (Boom, KeyboardInterrupt) as exc:
            raised = exc
    return model, opt, rec, start, snapshots, raised


def _check(
    e: Entry,
    model: torch.nn.Module,
    opt: Any,
    rec: Recorder,
    start: torch.Tensor,
    snaps: list[Any],
    lenient: bool = False,
) -> None:
    """``lenient``: the last recorded loss may not have reached the optimizer (a SIGINT right after it)."""
    x = _flat(model)
    assert torch.isfinite(x).all(), f"{e.name}: parameters are not finite: {x}"
    same = [i for i, p in enumerate(rec.points) if torch.equal(p, x)]
    if _whole_run(opt):
        finite = [f for f in rec.losses if math.isfinite(f)]
        if not torch.equal(x, start):
            assert same, f"{e.name}: parameters {x.tolist()} are neither the start nor an evaluated point"
            best = {min(finite)} if finite else set()
            earlier = [f for f in rec.losses[:-1] if math.isfinite(f)]
            if lenient and earlier:
                best.add(min(earlier))
            assert min(rec.losses[i] for i in same) in best, (
                f"{e.name}: parameters at loss {[rec.losses[i] for i in same]}, best finite seen {best}"
            )
        _check_grad(e, model)
    else:
        trial = [p for p in rec.points if not any(torch.equal(p, s) for s in snaps)]
        last = snaps[-1] if snaps else start  # an interrupt before the first step: the start itself
        assert torch.equal(x, last) or not any(torch.equal(x, p) for p in trial), (
            f"{e.name}: parameters left at a perturbed trial point {x.tolist()}"
        )
        for p in model.parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), f"{e.name}: non-finite p.grad {p.grad}"


def _check_grad(e: Entry, model: torch.nn.Module) -> None:
    grads = [p.grad for p in model.parameters()]
    if all(g is None for g in grads):
        return
    with torch.no_grad():
        saved = [p.detach().clone() for p in model.parameters()]
    try:
        for p in model.parameters():
            p.grad = None
        loss = model()
        truth = torch.autograd.grad(loss, list(model.parameters()))
    finally:
        for p, g, s in zip(model.parameters(), grads, saved):
            p.grad = g
            with torch.no_grad():
                p.copy_(s)
    for g, t in zip(grads, truth):
        assert g is not None, f"{e.name}: p.grad is None for some parameters only"
        assert torch.allclose(g.to(torch.float64), t.to(torch.float64), rtol=1e-5, atol=1e-7), (
            f"{e.name}: p.grad {g} does not match the parameters (gradient there {t})"
        )


def _clean_calls(e: Entry) -> int:
    rec = _run(e, lambda k: None)[2]
    return len(rec.points)


FAULTS: dict[str, Callable[[int], Callable[[int], str | None]]] = {
    "raise@1": lambda n: lambda k: "raise" if k == 1 else None,
    "raise@2": lambda n: lambda k: "raise" if k == 2 else None,
    "raise@mid": lambda n: lambda k: "raise" if k == max(3, n // 2) else None,
    "interrupt@mid": lambda n: lambda k: "interrupt" if k == max(3, n // 2) else None,
    "nan@some": lambda n: lambda k: "nan" if k % 3 == 2 else None,
    "nan@all": lambda n: lambda k: "nan",
}


@pytest.mark.parametrize("kind", list(FAULTS))
@pytest.mark.parametrize("name", NAMES)
def test_fault(name: str, kind: str) -> None:
    if (name, kind) in XFAIL:
        pytest.xfail(XFAIL[(name, kind)])
    e = next(x for x in ENTRIES if x.name == name)
    n = _clean_calls(e)
    model, opt, rec, start, snaps, raised = _run(e, FAULTS[kind](n))
    if kind.startswith(("raise", "interrupt")) and (kind != "raise@mid" or n >= 3):
        assert raised is not None, f"{name}: the injected error did not propagate"
    if kind == "nan@all" and _whole_run(opt):
        assert torch.equal(_flat(model), start), f"{name}: moved although no finite loss was seen"
    _check(e, model, opt, rec, start, snaps)


SIGINT_RUNS = 6  # per entry: 39 entries -> 234 runs
SEED = 20261203
# A real SIGINT was, rarely, never seen by the caller (3 of about 300 runs across NevergradWrapper[Powell],
# OptunaWrapper[Random] and DirectWrapper). CPython drops an exception raised inside a finalizer
# (``__del__``, weakref callbacks) and reports it to ``sys.unraisablehook``; the test tells the two
# cases apart. The parameter checks always run first and must hold in both.
_LOST_IN_FINALIZER = "the KeyboardInterrupt was raised inside a finalizer, where CPython reports and drops it"
_GRAD_MODE_LEFT_OFF = (
    "autograd was left switched off: the interrupt landed while grad mode was being switched back "
    "(torch.no_grad's __exit__ and the package's own toggles are Python code a signal can interrupt)"
)
_LOST_UNKNOWN = "the SIGINT never reached the caller and no finalizer reported it (cause not found)"


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
@pytest.mark.parametrize("name", NAMES)
def test_real_sigint(name: str) -> None:
    """Real SIGINTs at seeded random moments of a run; the parameters stay at a safe point."""
    e = next(x for x in ENTRIES if x.name == name)
    t0 = time.perf_counter()
    _clean_calls(e)
    span = time.perf_counter() - t0
    rnd = random.Random(f"{SEED}-{name}")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for _ in range(SIGINT_RUNS):
            lost = _sigint_run(e, rnd.uniform(0.0, span))
            if lost:
                pytest.xfail(f"{name}: {lost}")
    finally:
        signal.signal(signal.SIGINT, previous)


def _sigint_run(e: Entry, delay: float) -> str:
    """One run interrupted after ``delay`` seconds; ``""`` when the interrupt reached the caller, else why not."""
    model = e.problem()
    opt = e.factory(model.parameters())
    rec = Recorder(model, opt.zero_grad, lambda k: None)
    start = _flat(model)
    snaps: list[torch.Tensor] = []
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    dropped: list[BaseException | None] = []
    hook = sys.unraisablehook

    def note(u: Any) -> None:
        if isinstance(u.exc_value, KeyboardInterrupt):
            dropped.append(u.exc_value)
        else:
            hook(u)

    sys.unraisablehook = note
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            timer.start()
            for _ in range(1 if isinstance(opt, BridgeOptimizer) else STEPS):
                snaps.append(_flat(model))
                opt.step(rec)  # type: ignore[arg-type]
            snaps.append(_flat(model))  # a finished run's answer is no trial point, even when it was evaluated
            timer.join()
            time.sleep(0.5)  # the interrupt lands here when the run ended first
        except KeyboardInterrupt:
            caught = True
        else:
            caught = False
        finally:
            timer.join()
            sys.unraisablehook = hook
            grad_mode_kept = torch.is_grad_enabled()
            torch.set_grad_enabled(True)  # never let one interrupted run switch autograd off for later tests
    _check(e, model, opt, rec, start, snaps, lenient=True)  # the parameters are safe either way
    if not grad_mode_kept:
        return _GRAD_MODE_LEFT_OFF
    if caught:
        return ""
    return _LOST_IN_FINALIZER if dropped else _LOST_UNKNOWN


def test_cobyla_all_nan_stays_at_start() -> None:
    """COBYLA sees a 1e30 stand-in for NaN: it must not move the parameters nor report success."""
    import torchzero_bridge as tzb

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="COBYLA", options={"maxiter": 30})
    with pytest.warns(UserWarning):
        opt.step(lambda backward=True: (w * math.nan).sum())
    assert w.tolist() == [1.0, 2.0]
    result = opt.result
    assert result is not None and result.success is False and "no finite loss" in result.message
    assert w.grad is None


def test_trust_exact_single_nan_does_not_crash() -> None:
    """One NaN loss (at a trial point) is covered by the non-finite policy, dense Hessian included."""
    import torchzero_bridge as tzb

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="trust-exact")
    calls = []

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        calls.append(1)
        loss = ((w - 3) ** 2).sum() * (w**2).sum()
        if len(calls) == 3:
            loss = loss * math.nan
        if backward:
            loss.backward()
        return loss

    with pytest.warns(UserWarning):
        loss = opt.step(closure)
    assert len(calls) > 3 and math.isfinite(float(loss))
    assert torch.isfinite(w).all() and float(loss) < 1e-6  # the minimum at 0 (loss 0) is still found
