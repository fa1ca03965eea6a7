"""Growing sample counts: the estimators' ``n_samples_schedule`` and the closure runs each step costs."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.zeroth_order import RDSA, SPSA, ForwardGradient, GaussianSmoothing, MeZO, RandomizedFDM


class Counted:
    """A closure on ``((w - 1) ** 2).sum()`` that counts its own calls (independently of ``nfev``)."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w
        self.calls = 0

    def __call__(self, backward: bool = True) -> torch.Tensor:
        self.calls += 1
        loss = ((self.w - 1.0) ** 2).sum()
        if backward:
            loss.backward()
        return loss


def _runs_per_step(est: Any, closure: Counted, steps: int) -> list[int]:
    counts = []
    for _ in range(steps):
        before = closure.calls
        est.step(closure)
        counts.append(closure.calls - before)
    return counts


def _sgd(p: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(p, lr=0.05)


# (constructor, closure runs for k samples): central3 2k, forward2 k + 1, forward mode k
CASES: list[tuple[str, Callable[..., Any], Callable[[int], int]]] = [
    ("SPSA", lambda p, **kw: SPSA(p, opt=_sgd, **kw), lambda k: 2 * k),
    ("RandomizedFDM", lambda p, **kw: RandomizedFDM(p, formula="forward2", opt=_sgd, **kw), lambda k: k + 1),
    ("RandomizedFDM5", lambda p, **kw: RandomizedFDM(p, formula="central5", **kw), lambda k: 4 * k),
    ("GaussianSmoothing", lambda p, **kw: GaussianSmoothing(p, n_samples=1, opt=_sgd, **kw), lambda k: k + 1),
    ("MeZO-seed-path", lambda p, **kw: MeZO(p, opt=_sgd, **kw), lambda k: 2 * k),
    ("MeZO-general-path", lambda p, **kw: MeZO(p, opt=_sgd, fill_grad=True, **kw), lambda k: 2 * k),
    ("ForwardGradient", lambda p, **kw: ForwardGradient(p, opt=_sgd, **kw), lambda k: k),
]


@pytest.mark.parametrize(("name", "make", "runs"), CASES, ids=[c[0] for c in CASES])
def test_linear_schedule_pins_the_closure_runs_of_every_step(
    name: str, make: Callable[..., Any], runs: Callable[[int], int]
) -> None:
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    est = make([w], n_samples_schedule="linear", seed=0)
    closure = Counted(w)
    # "linear" from n_samples=1: 1, 2, 3, 4 samples, then 4 (limit 4 * n_samples)
    expected = [runs(k) for k in (1, 2, 3, 4, 4, 4)]
    assert _runs_per_step(est, closure, 6) == expected
    assert est.nfev == closure.calls == sum(expected)
    assert est.estimates == 6


def test_callable_schedule_sets_each_steps_directions() -> None:
    sizes = [2, 1, 5, 3]
    w = torch.zeros(4, requires_grad=True)
    mezo = MeZO([w], h=1e-2, n_samples_schedule=lambda t: sizes[t], seed=3)
    closure = Counted(w)
    for t, k in enumerate(sizes):
        assert mezo.n_samples_at(t) == k
        before = closure.calls
        mezo.step(closure)
        assert len(mezo.projected_grads) == k  # one (seed, D) pair per direction
        assert closure.calls - before == 2 * k


def test_scheduled_estimate_equals_fixed_estimators_with_the_same_seeds() -> None:
    """Step t of a schedule [1, 3] is what an unscheduled n_samples=k estimator estimates from the same seeds."""

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (x**4).sum() + x[0] * x[1]

    x0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    w = x0.clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(11)
    scheduled = SPSA([w], h=1e-2, n_samples_schedule=lambda t: [1, 3][t], generator=gen)
    got = []
    for _ in range(2):
        scheduled.step(lambda backward=True: loss(w))
        got.append(w.grad.clone())

    v = x0.clone().requires_grad_(True)
    gen2 = torch.Generator().manual_seed(11)  # the fixed estimators draw their sample seeds from the same stream
    want = []
    for k in (1, 3):
        SPSA([v], h=1e-2, n_samples=k, generator=gen2).step(lambda backward=True: loss(v))
        want.append(v.grad.clone())
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=0, atol=0)


def test_state_dict_keeps_the_step_index_so_a_resumed_run_continues_the_schedule() -> None:
    def run(split: int | None) -> tuple[list[int], torch.Tensor]:
        w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        est = SPSA([w], h=1e-2, n_samples_schedule="linear", opt=_sgd, seed=4)
        closure = Counted(w)
        if split is None:
            return _runs_per_step(est, closure, 6), w.detach().clone()
        counts = _runs_per_step(est, closure, split)
        buf = io.BytesIO()
        torch.save(est.state_dict(), buf)
        buf.seek(0)
        fresh = SPSA([w], h=1e-2, n_samples_schedule="linear", opt=_sgd, seed=99)
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        assert fresh.estimates == split
        counts += _runs_per_step(fresh, Counted(w), 6 - split)
        return counts, w.detach().clone()

    whole_counts, whole_w = run(None)
    resumed_counts, resumed_w = run(2)
    assert whole_counts == resumed_counts == [2, 4, 6, 8, 8, 8]
    torch.testing.assert_close(resumed_w, whole_w, rtol=0, atol=0)


def test_geometric_schedule_and_jac_use_count_estimates() -> None:
    est = RandomizedFDM(n_samples=2, n_samples_schedule="geometric")
    assert [est.n_samples_at(t) for t in (0, 9, 10, 20, 30, 40)] == [2, 2, 4, 8, 16, 16]
    w = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    jac = RDSA(h=1e-4, n_samples_schedule=lambda t: 1 + t, seed=0)  # Gaussian: no probe point repeats
    opt = tzb.MinimizeWrapper([w], {"method": "BFGS", "jac": jac, "options": {"maxiter": 3}})
    opt.step(lambda backward=True: ((w - 1) ** 2).sum())
    assert jac.estimates == opt.result.njev >= 2
    # gradient j probed 2 * (1 + j) new points; the solver's own f(x) calls come on top
    jac_runs = sum(2 * (1 + j) for j in range(jac.estimates))
    assert jac_runs < opt.result.nfev <= jac_runs + 2 * jac.estimates


def test_random_grad_best_of_schedule_pins_runs_and_resumes() -> None:
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = tzb.RandomGrad([w], lr=0.1, best_of_schedule="linear", seed=0)
    closure = Counted(w)
    assert _runs_per_step(opt, closure, 3) == [2, 3, 4]  # f(x) plus best_of = 1, 2, 3 trials
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    fresh = tzb.RandomGrad([w], lr=0.1, best_of_schedule="linear", seed=0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.steps == 3
    assert _runs_per_step(fresh, closure, 3) == [5, 5, 5]  # best_of 4 = the limit 4 * best_of
    with pytest.raises(ValueError, match="RandomGrad: best_of_schedule expected one of"):
        tzb.RandomGrad([w], best_of_schedule="fast")


def test_bad_schedules_are_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="SPSA: n_samples_schedule expected one of"):
        SPSA(n_samples_schedule="cubic")
    with pytest.raises(TypeError, match="ForwardGradient: n_samples_schedule expected None"):
        ForwardGradient(n_samples_schedule=2)  # type: ignore[arg-type]
    w = torch.zeros(2, requires_grad=True)
    est = SPSA([w], n_samples_schedule=lambda t: 0, seed=0)
    with pytest.raises(ValueError, match=r"n_samples_schedule\(0\) for n_samples expected an integer >= 1, got 0"):
        est.step(Counted(w))
    assert est.estimates == 0 and est.nfev == 0
    assert torch.equal(w, torch.zeros(2))
