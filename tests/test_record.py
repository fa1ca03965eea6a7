"""EvalRecord: the one record of counters, best point, non-finite policy, deadline and restore.

Expected values are worked out by hand from the rules in the module docstring.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.core.closure import CountedClosure
from torchzero_bridge.core.record import EvalRecord, StopSolve


def test_best_point_is_the_first_strictly_smaller_finite_loss() -> None:
    rec = EvalRecord()
    with pytest.warns(tzb.NonFiniteLossWarning):
        seen = [rec.add(k, f) for k, f in enumerate([3.0, 2.0, 2.0, math.nan, -math.inf, 5.0])]
    assert [s[0] for s in seen] == [3.0, 2.0, 2.0, math.inf, math.inf, 5.0]
    assert [s[1] for s in seen] == [True, True, False, False, False, False]
    assert (rec.best_x, rec.best_f, rec.nfev, rec.n_nonfinite) == (1, 2.0, 6, 2)


def test_ties_replace_the_best_but_a_non_finite_loss_never_does() -> None:
    rec = EvalRecord(nonfinite="pass")
    rec.add("a", 1.0)
    assert rec.add("b", 1.0, ties=True) == (1.0, True)
    with pytest.warns(tzb.NonFiniteLossWarning):
        f, better = rec.add("c", math.inf, ties=True)
    assert f == math.inf and not better and rec.best_x == "b"


def test_policies_and_one_warning_per_record() -> None:
    rec = EvalRecord("Demo")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec.add(0, math.nan)
        rec.add(1, math.nan)
    assert len(caught) == 1 and str(caught[0].message).startswith("Demo: the closure returned a non-finite loss")
    assert caught[0].category is tzb.NonFiniteLossWarning
    passing = EvalRecord(nonfinite="pass", quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(passing.add(0, math.nan)[0])
    raising = EvalRecord(nonfinite="raise")
    with pytest.warns(tzb.NonFiniteLossWarning), pytest.raises(FloatingPointError):
        raising.add(0, math.nan)
    assert raising.nfev == 1 and raising.best_x is None
    with pytest.raises(ValueError, match="nonfinite: expected one of"):
        EvalRecord(nonfinite="zero")  # type: ignore[arg-type]


def test_add_many_matches_one_by_one_additions() -> None:
    losses = np.array([4.0, 1.0, math.nan, 1.0, 3.0])
    for ties, expected in [(False, 1), (True, 3)]:
        one = EvalRecord(nonfinite="pass", quiet=True)
        for i, f in enumerate(losses):
            one.add(i, float(f), ties=ties)
        many = EvalRecord(nonfinite="pass", quiet=True)
        got = many.add_many(losses.copy(), lambda i: i, ties=ties)
        assert got == expected == one.best_x == many.best_x
        assert (many.nfev, many.best_f, many.n_nonfinite) == (one.nfev, one.best_f, one.n_nonfinite) == (5, 1.0, 1)


def test_add_many_progress_and_inf_policy() -> None:
    calls: list = []
    rec = EvalRecord(on_eval=lambda f: calls.append(("one", f)), on_evals=lambda f: calls.append(("all", list(f))))
    rec.add_many(np.array([2.0, 1.0]), lambda i: i)
    f = np.array([math.nan, 0.5])
    with pytest.warns(tzb.NonFiniteLossWarning):
        rec.add_many(f, lambda i: i)
    assert calls == [("all", [2.0, 1.0]), ("one", math.inf), ("one", 0.5)]
    assert f[0] == math.inf and rec.best_f == 0.5 and rec.nfev == 4


def test_restore_writes_best_else_start() -> None:
    written: list = []
    rec = EvalRecord()
    rec.restore(written.append, start="x0")
    rec.add("best", 1.0)
    rec.restore(written.append, start="x0")
    EvalRecord().restore(written.append)  # neither: nothing is written
    assert written == ["x0", "best"]


def test_deadline_and_start_watch() -> None:
    rec = EvalRecord(deadline=time.perf_counter() - 1.0, timeout=2.5)
    with pytest.raises(StopSolve, match=r"timeout: stopped after 2.5 s"):
        rec.check_deadline()
    x0 = np.array([1.0, 1e6])
    rec = EvalRecord(start=x0)
    rec.add(np.array([1.0, 1e6 + 1e-3]), 1.0)
    assert not rec.start_seen
    rec.add(np.array([1.0, 1e6 * (1 + 1e-16)]), 1.0)  # the start up to rounding
    assert rec.start_seen


def test_state_is_a_plain_dict_an_optimizer_can_keep() -> None:
    st = {"best_x": None, "best_f": math.inf, "nfev": 7, "steps": 2}
    rec = EvalRecord()
    rec.attach(st)
    rec.add(torch.zeros(2), 0.5)
    assert st["nfev"] == 8 and st["best_f"] == 0.5 and st["steps"] == 2


def test_counted_closure_counts_runs_that_raise_and_non_finite_ones() -> None:
    w = torch.ones(2)
    runs = iter([1.0, math.nan])

    def closure(backward: bool = True) -> float:
        value = next(runs, None)
        if value is None:
            raise RuntimeError("boom")
        assert not torch.is_grad_enabled() and backward is False
        return value * float(w.sum())

    f = CountedClosure(closure, "demo")
    assert f() == 2.0 and math.isnan(f())
    with pytest.raises(RuntimeError):
        f()
    assert (f.count, f.nonfinite) == (3, 1)
    with pytest.raises(TypeError, match=r"demo.step\(\) needs a closure"):
        CountedClosure(None, "demo")
