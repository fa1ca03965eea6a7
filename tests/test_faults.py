"""Fault injection over every registered optimizer: closure errors, interrupts, NaN losses, real SIGINTs,
and, where the registry flags them, a callback stop and a timeout.

A recording closure keeps every evaluated point and the loss the optimizer was handed. After
each fault the parameters must be finite and:

* whole-run optimizers (scipy/nevergrad/optuna wrappers, derivative-free methods): at the start
  or at an evaluated point whose loss is the best finite loss seen;
* iterative gradient estimators (``opt=`` torch optimizer): at the point the failing step started
  from (the perturbation undone), never at a perturbed trial point;
* ``p.grad`` is ``None`` or, for whole-run optimizers, the autograd gradient at the parameters
  (for estimators: finite);
* a callback stop or a timeout raises nothing and ``result`` says which ended the run.

The recorder and the checks live in :mod:`torchzero_bridge.testing.recorder` (the shipped
contract suite uses them too).

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

from torchzero_bridge.testing.contract_checks import stopped_cleanly
from torchzero_bridge.testing.recorder import Recorder, RunResult, check_safe_point, flat, run_entry
from torchzero_bridge.testing.registry import ENTRIES, Entry

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # solver chatter and NonFiniteLossWarning by design
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

NAMES = [e.name for e in ENTRIES]
STEPS = 4  # steps of an iterative optimizer per run (a whole-run wrapper solves in its first)
XFAIL: dict[tuple[str, str], str] = {}


def _steps(e: Entry) -> int:
    return 1 if e.whole_run else STEPS


def _clean_calls(e: Entry) -> int:
    return len(run_entry(e, _steps(e)).rec.calls)


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
    out = run_entry(e, _steps(e), FAULTS[kind](n))
    if kind.startswith(("raise", "interrupt")) and (kind != "raise@mid" or n >= 3):
        assert out.raised is not None, f"{name}: the injected error did not propagate"
    if kind == "nan@all" and (e.whole_run or e.best_point):
        assert torch.equal(flat(out.model), out.start), f"{name}: moved although no finite loss was seen"
    check_safe_point(e, out)


@pytest.mark.parametrize("name", [e.name for e in ENTRIES if e.callback])
def test_callback_stop(name: str) -> None:
    """A callback returning True mid-run: no exception, result says so, parameters at the best point."""
    e = next(x for x in ENTRIES if x.name == name)
    calls: list[int] = []

    def stop_on_second(*args: Any) -> bool:
        calls.append(1)
        return len(calls) >= 2

    out = run_entry(e, 1, callback=stop_on_second)
    assert out.raised is None, f"{name}: {out.raised!r}"
    if len(calls) < 2:  # the solver calls back once only (e.g. SHGO with iters=1): a first-call stop instead
        calls.clear()
        out = run_entry(e, 1, callback=lambda *a: calls.append(1) or True)
    stopped_cleanly(e, out, "callback")
    assert len(out.rec.calls) <= _clean_calls(e)


@pytest.mark.parametrize("name", [e.name for e in ENTRIES if e.timeout])
def test_timeout(name: str) -> None:
    """A slow closure (20 ms a call) and a deadline half-way through the untimed run's calls: a clean stop there."""
    e = next(x for x in ENTRIES if x.name == name)
    n = _clean_calls(e)
    out = run_entry(e, 1, delay=0.02, timeout=0.02 * max(2, n // 2))
    assert out.raised is None, f"{name}: {out.raised!r}"
    assert len(out.rec.calls) < n, f"{name}: {len(out.rec.calls)} closure calls, the untimed run makes {n}"
    stopped_cleanly(e, out, "timeout")


SIGINT_RUNS = 4  # per entry: 56 entries -> 224 runs
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
    out = RunResult(model, opt, Recorder(model, opt.zero_grad))
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
            for _ in range(_steps(e)):
                out.snapshots.append(flat(model))
                opt.step(out.rec)
            out.snapshots.append(flat(model))  # a finished run's answer is no trial point, even when it was evaluated
            timer.join()
            time.sleep(0.05)  # the interrupt lands here when the run ended first (the timer has fired)
        except KeyboardInterrupt:
            caught = True
        else:
            caught = False
        finally:
            timer.join()
            sys.unraisablehook = hook
            grad_mode_kept = torch.is_grad_enabled()
            torch.set_grad_enabled(True)  # never let one interrupted run switch autograd off for later tests
    check_safe_point(e, out, lenient=True)  # the parameters are safe either way
    if not grad_mode_kept:
        return _GRAD_MODE_LEFT_OFF
    if caught:
        return ""
    return _LOST_IN_FINALIZER if dropped else _LOST_UNKNOWN


@pytest.mark.parametrize("name", NAMES)
def test_an_interrupt_inside_a_no_grad_exit_leaves_autograd_on(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGINT that lands in ``torch.no_grad().__exit__`` before it restores the mode, made deterministic.

    The second ``no_grad`` exit of the run raises ``KeyboardInterrupt`` instead of restoring the previous
    mode; the optimizer's step must still leave autograd as it found it.
    """
    e = next(x for x in ENTRIES if x.name == name)
    model = e.problem()
    exits = [0]
    original = torch.no_grad.__exit__

    def interrupted_exit(self: Any, *exc: Any) -> None:
        exits[0] += 1
        if exits[0] == 2:
            raise KeyboardInterrupt("inside torch.no_grad().__exit__")
        original(self, *exc)

    def closure(backward: bool = True) -> torch.Tensor:
        loss = model()
        if backward and torch.is_grad_enabled():
            loss.backward()
        return loss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt: Any = e.factory(model.parameters())
        monkeypatch.setattr(torch.no_grad, "__exit__", interrupted_exit)
        try:
            try:
                for _ in range(4):
                    opt.step(closure)
            except KeyboardInterrupt:
                pass
            left_on = torch.is_grad_enabled()
        finally:
            monkeypatch.undo()
            torch.set_grad_enabled(True)
    if exits[0] < 2:
        pytest.skip(f"{name} left no_grad fewer than two times in 4 steps")
    assert left_on, f"{name}: autograd left switched off by an interrupt inside a no_grad exit"


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
