"""The longer checks of :class:`~torchzero_bridge.testing.contract.OptimizerContract`, one function each.

Each takes an :class:`~torchzero_bridge.testing.entry.Entry` and raises ``AssertionError`` with a
message naming it when a promise is broken.

Example:
    >>> from torchzero_bridge.testing.registry import entry
    >>> defaults_are_signature_defaults(entry("RandomWalk"))  # passes silently
"""

from __future__ import annotations

import inspect
import io
import math
import warnings
from typing import Any

import torch

from torchzero_bridge.errors import FrozenParameterWarning
from torchzero_bridge.testing.entry import Entry, logging_closure
from torchzero_bridge.testing.recorder import RunResult, check_safe_point, flat

__all__ = [
    "answer_after_run",
    "batched_matches_serial",
    "defaults_are_signature_defaults",
    "frozen_untouched",
    "group_bounds",
    "integer_tensors",
    "no_repeated_evaluation",
    "state_round_trip",
    "stopped_cleanly",
]


def _loss_at_params(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(model())


def answer_after_run(e: Entry, out: RunResult, steps: int) -> None:
    """Promise 2 after a clean run: finite parameters at the answer, ``step`` returning its loss.

    Every step's returned loss is checked where it is known: the last one against an independent
    evaluation at the parameters (``loss_at_answer``), each against the lowest loss of all closure
    runs before its end (``best_point``); whole solves also leave ``result.x`` in the parameters.
    """
    x = flat(out.model)
    assert torch.isfinite(x).all(), f"{e.name}: parameters are not finite: {x.tolist()}"
    assert len(out.returned) == steps
    if e.loss_at_answer:
        here = _loss_at_params(out.model)
        assert math.isclose(out.returned[-1], here, rel_tol=1e-12, abs_tol=1e-15), (
            f"{e.name}: step returned {out.returned[-1]} but the loss at the parameters is {here}"
        )
    result = getattr(out.opt, "result", None)
    if e.whole_run and result is not None and "x" in result:
        rx = torch.as_tensor(result.x, dtype=torch.float64).reshape(-1)
        assert torch.equal(rx, x), f"{e.name}: parameters {x.tolist()} differ from result.x {rx.tolist()}"
    if e.best_point:
        bounds = [*out.per_step[1:], len(out.rec.calls)]
        for step, end in enumerate(bounds):
            finite = [f for f in out.rec.losses[:end] if math.isfinite(f)]
            assert finite and out.returned[step] == min(finite), (
                f"{e.name}: step {step} returned {out.returned[step]}, the lowest loss seen was {min(finite)}"
            )
        best = min(out.rec.losses)
        assert any(torch.equal(p, x) for p, f in zip(out.rec.points, out.rec.losses) if f == best), (
            f"{e.name}: the parameters are not a point where the lowest loss {best} was seen"
        )


def stopped_cleanly(e: Entry, out: RunResult, why: str) -> None:
    """A run stopped by ``why`` (``"callback"`` or ``"timeout"``): result says so, parameters at the best point."""
    result = getattr(out.opt, "result", None)
    assert result is not None and result.success is False, f"{e.name}: a {why} stop reported success"
    assert why in str(result.message), f"{e.name}: result.message {result.message!r} does not say {why!r}"
    check_safe_point(e, out)
    if out.rec.losses and e.loss_at_answer:
        here = _loss_at_params(out.model)
        assert math.isclose(out.returned[-1], here, rel_tol=1e-12, abs_tol=1e-15) or not math.isfinite(here)


def no_repeated_evaluation(e: Entry, out: RunResult) -> None:
    """Promise 4 within each step: the closure never runs again at one of the two latest points.

    Value and gradient at one point share one run; the only allowed repeat is a gradient
    (``backward=True``) at a point so far evaluated value-only.
    """
    starts = [*out.per_step, len(out.rec.calls)]
    for step in range(len(out.per_step)):
        recent: list[tuple[bytes, bool]] = []  # the two latest distinct points, with "has a gradient"
        for i in range(starts[step], starts[step + 1]):
            backward = out.rec.calls[i][0]
            key = out.rec.points[i].numpy().tobytes()
            for j, (seen, had_grad) in enumerate(recent):
                if seen == key:
                    assert backward and not had_grad, (
                        f"{e.name}: step {step} ran the closure again at a point it had just evaluated "
                        f"(call {i - starts[step] + 1}, backward={backward})"
                    )
                    recent.pop(j)
                    break
            recent = [(key, backward), *recent][:2]


def defaults_are_signature_defaults(e: Entry) -> None:
    """Promise 6: built with only its required arguments, each option is its signature's default.

    Group options (``opt.defaults`` and every group) equal the constructor's default of the same
    name, and a wrapper passes its solver no option the user did not give.
    """
    assert e.minimal is not None
    params = list(e.problem().parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = e.minimal(params)
    signature = inspect.signature(type(opt).__init__).parameters
    for name, value in opt.defaults.items():
        p = signature.get(name)
        if p is None or p.default is inspect.Parameter.empty or p.default is None:
            continue  # None means "chosen from the other options" (documented per class)
        assert _same(value, p.default), f"{e.name}: default {name}={value!r}, the signature says {p.default!r}"
        for k, group in enumerate(opt.param_groups):
            assert _same(group[name], p.default), f"{e.name}: param_groups[{k}][{name!r}]={group[name]!r}"
    hidden = getattr(opt, "solver_kwargs", None) or {}
    assert not hidden, f"{e.name}: passes options nobody gave to the solver: {hidden}"
    args = getattr(opt, "minimizer_args", None) or {}
    assert set(args) <= {"method"}, f"{e.name}: minimizer_args holds options nobody gave: {args}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) if not isinstance(a, torch.Tensor) else False


def group_bounds(e: Entry, steps: int) -> None:
    """Promise 7: a narrow box on the last group and a wide one on the others each hold for their tensors.

    Some evaluated point (or the answer) must move an earlier group further than the last group's
    box allows, which shows that box was not applied to every tensor.
    """
    model = e.problem()
    params = list(model.parameters())
    assert len(params) >= 2, f"{e.name}: the problem needs two or more parameter tensors"
    start = [p.detach().clone() for p in params]
    widths = [0.5] * (len(params) - 1) + [0.02]
    boxes = [(s - w, s + w) for s, w in zip(start, widths)]
    groups = [{"params": [p], "bounds": box} for p, box in zip(params, boxes)]
    points: list[torch.Tensor] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt: Any = e.factory(groups)
        closure = logging_closure(model, opt.zero_grad, points)
        for _ in range(steps):
            opt.step(closure)
            for k, (p, (lo, hi)) in enumerate(zip(params, boxes)):
                inside = bool(((p.detach() >= lo) & (p.detach() <= hi)).all())
                assert inside, f"{e.name}: param_groups[{k}]'s tensor left its box: {p.detach().tolist()}"
    tail = params[-1].numel()
    rest = torch.cat([s.reshape(-1).to(torch.float64).cpu() for s in start[:-1]])
    moved = max(float((x[:-tail] - rest).abs().max()) for x in [*points, flat(model)])
    assert moved > widths[-1], f"{e.name}: earlier groups never left the last group's box (moved {moved:.3g})"


def state_round_trip(e: Entry, k: int, m: int) -> None:
    """Promise 8: after ``k`` steps, a fresh optimizer loading the state (``torch.load(weights_only=True)``)
    evaluates the same points and ends with the same losses and parameters, bit for bit, over ``m`` steps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = e.problem()
        opt: Any = e.factory(model.parameters())
        log: list[torch.Tensor] = []
        closure = logging_closure(model, opt.zero_grad, log)
        for _ in range(k):
            opt.step(closure)
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
        log.clear()
        expected = [float(opt.step(closure)) for _ in range(m)]
        expected_points = list(log)

        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        other = e.problem()
        other.load_state_dict(saved["model"])
        resumed: Any = e.factory(other.parameters())
        resumed.load_state_dict(saved["opt"])
        got_points: list[torch.Tensor] = []
        closure = logging_closure(other, resumed.zero_grad, got_points)
        got = [float(resumed.step(closure)) for _ in range(m)]
    assert len(got_points) == len(expected_points) and all(
        torch.equal(a, b) for a, b in zip(got_points, expected_points)
    ), f"{e.name}: the resumed run evaluates other points"
    assert got == expected, f"{e.name}: losses after resuming {got} differ from {expected}"
    assert torch.equal(flat(other), flat(model)), f"{e.name}: parameters after resuming differ"


def frozen_untouched(e: Entry, max_steps: int = 10) -> None:
    """Promise 9: a frozen ``nn.Parameter`` is skipped (said once), never written, never given a gradient."""
    model = e.problem()
    params = list(model.parameters())
    frozen = params[-1]
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    trainable = flat(model)[: -frozen.numel()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt: Any = e.factory(model.parameters())
    said = [w for w in caught if issubclass(w.category, FrozenParameterWarning)]
    assert len(said) == 1, f"{e.name}: {len(said)} FrozenParameterWarning(s), expected one"
    assert all(p is not frozen for g in opt.param_groups for p in g["params"]), f"{e.name}: frozen tensor in a group"
    closure = logging_closure(model, opt.zero_grad, [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(max_steps):
            opt.step(closure)
            assert torch.equal(frozen.detach(), before), f"{e.name}: the frozen parameter changed"
            if not torch.equal(flat(model)[: -frozen.numel()], trainable):
                break
    assert not torch.equal(flat(model)[: -frozen.numel()], trainable), f"{e.name}: the trainable tensors never moved"
    assert frozen.grad is None, f"{e.name}: the frozen parameter got a gradient"


class _Mixed(torch.nn.Module):
    """A float tensor and an integer tensor; minimum at ``x = 0.3``, ``k = 2``."""

    k: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.x = torch.nn.Parameter(torch.tensor([0.9, -0.4], dtype=torch.float64))
        self.register_buffer("k", torch.tensor([0, 4, -1]))

    def forward(self) -> torch.Tensor:
        return ((self.x - 0.3) ** 2).sum() + ((self.k - 2) ** 2).sum().to(torch.float64)


def integer_tensors(e: Entry, steps: int) -> None:
    """Integer tensors are optimized as integers (``integers``) or refused at construction, naming the dtype."""
    model = _Mixed()
    params = [model.x, model.k]
    if not e.integers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e.factory(params)
        except (TypeError, ValueError) as exc:
            assert "int" in str(exc), f"{e.name}: the error does not name the integer dtype: {exc}"
            return
        raise AssertionError(f"{e.name}: accepted an integer tensor it is not flagged to optimize")
    seen: list[torch.dtype] = []

    def closure(backward: bool = True) -> torch.Tensor:
        seen.append(model.k.dtype)
        return model()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt: Any = e.factory(params)
        start = model().item()
        losses = [float(opt.step(closure)) for _ in range(steps)]
    assert model.k.dtype == torch.int64 and set(seen) == {torch.int64}, f"{e.name}: the integer tensor changed dtype"
    assert math.isfinite(losses[-1]) and model().item() <= start, f"{e.name}: the step ended worse than it started"


def batched_matches_serial(e: Entry, steps: int) -> None:
    """A :class:`~torchzero_bridge.BatchObjective` gives the same run as the plain closure."""
    from torchzero_bridge.testing.functions import batch_objective

    runs = []
    for batched in (False, True):
        model = e.problem()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt: Any = e.factory(model.parameters())
            closure = batch_objective(model) if batched else logging_closure(model, opt.zero_grad, [])
            runs.append(([float(opt.step(closure)) for _ in range(steps)], flat(model)))
    (serial, xs), (batch, xb) = runs
    assert torch.allclose(torch.tensor(batch), torch.tensor(serial), rtol=1e-12, atol=1e-14), (
        f"{e.name}: batched losses {batch} differ from serial {serial}"
    )
    assert torch.allclose(xb, xs, rtol=1e-12, atol=1e-14), f"{e.name}: batched run ended elsewhere"
