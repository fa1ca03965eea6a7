"""The contract suite: DESIGN's promises, checked on any optimizer described by an :class:`Entry`.

Subclass :class:`OptimizerContract` in a pytest module and give it an ``entry`` fixture; every
``test_*`` method then runs on each entry, skipping the checks its capability flags say do not
apply (the skip reason names the flag). This package runs it over its whole registry
(``tests/test_contract_suite.py``); a third party runs it over its own optimizer:

.. code-block:: python

    import pytest, torch
    from torchzero_bridge.testing.contract import OptimizerContract
    from torchzero_bridge.testing.entry import Entry
    from torchzero_bridge.testing.problems import Rosenbrock

    MINE = Entry("MyOpt", lambda p: MyOpt(p, seed=0), lambda: Rosenbrock([-1.2, 1.0], [0.8]), best_point=True)

    @pytest.fixture(params=[MINE], ids=lambda e: e.name)
    def entry(request):
        return request.param

    class TestMyOpt(OptimizerContract):
        pass

The checks, by promise: dtype and device preserved (1); the parameters end at the answer and
``step`` returns its loss there, ``p.grad`` matching it (2); a closure error, a
``KeyboardInterrupt``, a callback stop and a timeout leave the best finite point (3); one
closure run per distinct point (4); unknown param-group options are not dropped silently (5);
defaults are the solver's (6); per-group options apply to their group (7); a ``state_dict``
loaded with ``weights_only=True`` continues identically (8); frozen parameters are untouched and
NaN losses everywhere leave the start (9). Besides: value-only optimizers never ask for a backward
pass, integer tensors are kept integral or refused, batched evaluation gives the serial run, and
a seeded factory reproduces its run.

Example:
    >>> sorted(n for n in dir(OptimizerContract) if n.startswith("test_"))[:2]
    ['test_answer_and_returned_loss', 'test_batched_evaluation_matches_serial']
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch

from torchzero_bridge.errors import IgnoredOptionWarning
from torchzero_bridge.testing import contract_checks as checks
from torchzero_bridge.testing.entry import Entry
from torchzero_bridge.testing.recorder import Boom, RunResult, check_grad_at_params, check_safe_point, flat, run_entry

__all__ = ["OptimizerContract", "clean_run", "entry", "steps_for"]

_CLEAN: dict[tuple[int, str], RunResult] = {}


@pytest.fixture
def entry() -> Entry:
    """The optimizer under test: override this fixture (usually parametrized over several entries)."""
    raise NotImplementedError("define an `entry` fixture returning a torchzero_bridge.testing.entry.Entry")


def steps_for(e: Entry) -> int:
    """Steps per checked run: two whole solves, or three iterations.

    Example:
        >>> from torchzero_bridge.testing.registry import entry
        >>> steps_for(entry("SHGOWrapper")), steps_for(entry("SPSA"))
        (2, 3)
    """
    return 2 if e.whole_run else 3


def clean_run(e: Entry) -> RunResult:
    """One fault-free run of ``steps_for(e)`` steps, made once per entry and shared by the checks that only read it.

    Example:
        >>> from torchzero_bridge.testing.registry import entry
        >>> clean_run(entry("RandomWalk")) is clean_run(entry("RandomWalk"))
        True
    """
    key = (id(e.factory), e.name)
    if key not in _CLEAN:
        _CLEAN[key] = run_entry(e, steps_for(e))
    return _CLEAN[key]


def _need(flag: bool, e: Entry, why: str) -> None:
    if not flag:
        pytest.skip(f"{e.name}: {why}")


class OptimizerContract:
    """DESIGN's "promises every solver keeps" as pytest checks over an ``entry`` fixture."""

    # ------------------------------------------------------------------ promise 1
    def test_dtype_and_device_preserved(self, entry: Entry) -> None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            model = entry.problem().to(device=device, dtype=torch.float32)
            storage = [p.data_ptr() for p in model.parameters()]
            out = run_entry(entry, steps_for(entry), model=model)
            assert out.raised is None, f"{entry.name}: {out.raised!r}"
            want = (torch.float32,) * len(storage), tuple(torch.device(device) for _ in storage)
            for _, _, dtypes, devs in out.rec.calls:
                assert (dtypes, tuple(torch.device(d) for d in devs)) == want, (
                    f"{entry.name}: the closure saw {dtypes} on {devs}, expected float32 on {device}"
                )
            params = list(model.parameters())
            assert all(p.dtype == torch.float32 and p.device.type == device for p in params)
            assert [p.data_ptr() for p in params] == storage, f"{entry.name}: parameters were rebound, not written"
            for p in params:
                assert p.grad is None or (p.grad.dtype, p.grad.device) == (p.dtype, p.device)

    def test_integer_tensors_kept_or_refused(self, entry: Entry) -> None:
        checks.integer_tensors(entry, steps_for(entry))

    # ------------------------------------------------------------------ promise 2
    def test_answer_and_returned_loss(self, entry: Entry) -> None:
        out = clean_run(entry)
        assert out.raised is None, f"{entry.name}: {out.raised!r}"
        checks.answer_after_run(entry, out, steps_for(entry))
        if entry.whole_run or entry.best_point:
            check_grad_at_params(entry, out.model)

    def test_same_factory_same_run(self, entry: Entry) -> None:
        """A seeded factory reproduces its run: the same points evaluated, the same losses returned."""
        first, second = clean_run(entry), run_entry(entry, steps_for(entry))
        same = len(first.rec.points) == len(second.rec.points) and all(
            torch.equal(a, b) for a, b in zip(first.rec.points, second.rec.points)
        )
        assert same and first.returned == second.returned, f"{entry.name}: two runs from one factory differ"

    def test_value_only_runs_without_backward(self, entry: Entry) -> None:
        out = clean_run(entry)
        asked = [b for b, _, _, _ in out.rec.calls]
        if entry.gradient:  # a backward pass, or (Hessian methods) grad mode kept for double backward
            assert any(b or g for b, g, _, _ in out.rec.calls), f"{entry.name} is flagged gradient but never asked"
            return
        assert not any(asked), f"{entry.name}: a value-only optimizer called closure(backward=True)"
        assert not any(g for _, g, _, _ in out.rec.calls), f"{entry.name}: value-only evaluations ran with grad mode on"
        if entry.whole_run or entry.best_point:  # no gradient was computed at the answer, so none is left
            assert all(p.grad is None for p in out.model.parameters()), (
                f"{entry.name}: p.grad left after a value-only run"
            )

    def test_batched_evaluation_matches_serial(self, entry: Entry) -> None:
        _need(entry.batching, entry, "no batched evaluation")
        checks.batched_matches_serial(entry, steps_for(entry))

    # ------------------------------------------------------------------ promise 3
    def test_closure_error_leaves_best_point(self, entry: Entry) -> None:
        self._fault(entry, "raise", Boom)

    def test_keyboard_interrupt_leaves_best_point(self, entry: Entry) -> None:
        self._fault(entry, "interrupt", KeyboardInterrupt)

    def _fault(self, entry: Entry, what: str, exc: type[BaseException]) -> None:
        n = len(clean_run(entry).rec.calls)
        k = max(3, n // 2)
        _need(n >= k, entry, f"a clean run makes only {n} closure calls")
        out = run_entry(entry, steps_for(entry), lambda i: what if i == k else None)
        assert isinstance(out.raised, exc), f"{entry.name}: the injected {exc.__name__} did not propagate"
        check_safe_point(entry, out)

    def test_callback_stop_leaves_best_point(self, entry: Entry) -> None:
        _need(entry.callback, entry, "no callback option")
        seen: list[Any] = []

        def stop(*args: Any) -> bool:
            seen.append(args)
            return True

        out = run_entry(entry, 1, callback=stop)
        assert out.raised is None, f"{entry.name}: a callback stop raised {out.raised!r}"
        assert len(seen) == 1, f"{entry.name}: the callback ran {len(seen)} times; it asked to stop at the first"
        checks.stopped_cleanly(entry, out, "callback")

    def test_timeout_leaves_best_point(self, entry: Entry) -> None:
        _need(entry.timeout, entry, "no timeout option")
        per_step = [*clean_run(entry).per_step, len(clean_run(entry).rec.calls)]
        clean = per_step[1] - per_step[0]  # the calls of one step
        _need(clean >= 4, entry, f"a clean run makes only {clean} closure calls, too few to see a timeout")
        out = run_entry(entry, 1, delay=0.02, timeout=0.03)  # about two 20 ms calls fit
        assert out.raised is None, f"{entry.name}: a timeout raised {out.raised!r}"
        assert len(out.rec.calls) < clean, f"{entry.name}: the timeout did not shorten the run"
        checks.stopped_cleanly(entry, out, "timeout")

    # ------------------------------------------------------------------ promise 4
    def test_one_closure_run_per_distinct_point(self, entry: Entry) -> None:
        checks.no_repeated_evaluation(entry, clean_run(entry))

    # ------------------------------------------------------------------ promise 5
    def test_unknown_group_option_is_not_dropped(self, entry: Entry) -> None:
        params = list(entry.problem().parameters())
        key = "zzz_not_an_option"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                entry.factory([{"params": params, key: 1}])
            except (TypeError, ValueError, KeyError) as exc:
                assert key in str(exc), f"{entry.name}: the error does not name the option: {exc}"
                return
        said = [w for w in caught if issubclass(w.category, IgnoredOptionWarning) and key in str(w.message)]
        assert said, f"{entry.name}: the param-group option {key!r} was dropped without IgnoredOptionWarning"

    # ------------------------------------------------------------------ promise 6
    def test_defaults_are_the_solvers(self, entry: Entry) -> None:
        _need(entry.minimal is not None, entry, "no minimal factory")
        checks.defaults_are_signature_defaults(entry)

    # ------------------------------------------------------------------ promise 7
    def test_group_bounds_apply_to_their_group(self, entry: Entry) -> None:
        _need(entry.bounds, entry, "per-group bounds are not promised")
        checks.group_bounds(entry, steps_for(entry))

    # ------------------------------------------------------------------ promise 8
    def test_state_dict_round_trip_continues_identically(self, entry: Entry) -> None:
        checks.state_round_trip(entry, k=2, m=2)

    # ------------------------------------------------------------------ promise 9
    def test_frozen_parameter_untouched(self, entry: Entry) -> None:
        checks.frozen_untouched(entry)

    def test_nan_everywhere_leaves_the_start(self, entry: Entry) -> None:
        out = run_entry(entry, steps_for(entry), lambda i: "nan")
        assert out.raised is None, f"{entry.name}: {out.raised!r}"
        x = flat(out.model)
        assert torch.isfinite(x).all(), f"{entry.name}: NaN losses left the parameters at {x.tolist()}"
        assert torch.equal(x, out.start), f"{entry.name}: moved although no finite loss was seen"
        assert all(not math.isfinite(v) for v in out.returned), f"{entry.name}: a finite loss {out.returned} reported"
        for p in out.model.parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), f"{entry.name}: non-finite p.grad"
