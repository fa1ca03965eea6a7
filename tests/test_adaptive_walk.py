"""AdaptiveOrderWalk: the order trace and the points against a hand-written loop of the same rule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import torchzero_bridge as tzb

A = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)  # a skewed quadratic: sum(a_i x_i^2)
X0 = [1.0, -0.8, 2.0]


def _quad(x: torch.Tensor) -> float:
    return float((A * x * x).sum())


def _reference(
    seed: int, steps: int, lr: float, max_order: int, retries: int, convex: bool, opposite: bool
) -> tuple[list[int], list[list[float]]]:
    """The rule written out with plain lists: velocities, reverse-order undo, rise and fall of the order."""
    gen = torch.Generator().manual_seed(seed)  # the optimizer's generator on the CPU starts at the seed
    x = list(X0)
    fx = _quad(torch.tensor(x, dtype=torch.float64))
    vel = [[0.0] * 3 for _ in range(max_order - 1)]
    order, fails, last = 1, 0, math.inf
    orders, points = [], []
    for _ in range(steps):
        z = torch.randn(3, generator=gen, dtype=torch.float64).tolist()
        delta = [lr * zi for zi in z]
        before = [list(v) for v in vel]
        if order == 1:
            move = delta
        else:
            vel[order - 2] = [v + d for v, d in zip(vel[order - 2], delta)]
            for j in range(order - 3, -1, -1):
                vel[j] = [a + b for a, b in zip(vel[j], vel[j + 1])]
            move = list(vel[0])
        kept = 0
        for sign in (1, -1) if opposite else (1,):
            trial = [xi + sign * mi for xi, mi in zip(x, move)]
            ft = _quad(torch.tensor(trial, dtype=torch.float64))
            if ft < fx:
                x, fx, kept = trial, ft, sign
                break
        if kept == 0:
            vel = before
            fails += 1
            if fails >= retries and order > 1:
                vel[order - 2] = [0.0] * 3
                order, fails, last = order - 1, 0, math.inf
        else:
            if kept < 0:
                vel = [[-v for v in row] for row in vel[: order - 1]] + vel[order - 1 :]
            fails = 0
            top = move if order == 1 else vel[order - 2]
            size = math.sqrt(sum(v * v for v in top))
            rises = not convex or (last < math.inf and size < last)
            last = size
            if rises and order < max_order:
                vel[order - 1] = [0.0] * 3
                order, fails, last = order + 1, 0, math.inf
        orders.append(order)
        points.append(list(x))
    return orders, points


@pytest.mark.parametrize(
    ("convex", "opposite", "retries"), [(False, False, 3), (True, False, 2), (False, True, 1), (True, True, 4)]
)
def test_order_trace_and_points_match_a_hand_written_loop(convex: bool, opposite: bool, retries: int) -> None:
    w = torch.tensor(X0, dtype=torch.float64)
    opt = tzb.AdaptiveOrderWalk(
        [w],
        lr=0.2,
        max_order=4,
        retries=retries,
        convex=convex,
        on_reject="opposite" if opposite else "undo",
        seed=7,
    )
    orders, points = _reference(7, 150, 0.2, 4, retries, convex, opposite)
    got_orders = []
    for t in range(150):
        opt.step(lambda: (A * w * w).sum())
        got_orders.append(opt.order)
        assert w.tolist() == pytest.approx(points[t], abs=1e-12), f"step {t}"
    assert got_orders == orders
    assert len(set(orders)) >= (2 if convex else 3)  # the trace really rises and falls on this problem
    assert any(b < a for a, b in itertools.pairwise(orders))


def test_convex_variant_rises_more_slowly() -> None:
    plain, _ = _reference(7, 150, 0.2, 4, 3, False, False)
    convex, _ = _reference(7, 150, 0.2, 4, 3, True, False)
    assert plain != convex
    assert sum(convex) < sum(plain)


def test_order_rises_every_kept_move_and_stays_at_max_on_a_falling_loss() -> None:
    count = iter(range(10**6))
    w = torch.zeros(2, dtype=torch.float64)
    opt = tzb.AdaptiveOrderWalk([w], lr=0.1, max_order=3, seed=0)
    trace = []
    for _ in range(5):
        opt.step(lambda: -float(next(count)))  # every move is kept
        trace.append(opt.order)
    assert trace == [2, 3, 3, 3, 3]


def test_order_falls_after_retries_failures() -> None:
    w = torch.zeros(2, dtype=torch.float64)
    opt = tzb.AdaptiveOrderWalk([w], lr=0.1, max_order=4, retries=2, start_order=4, seed=0)
    trace = []
    for _ in range(7):
        opt.step(lambda: float((w * w).sum()) + 1.0 * bool(w.abs().sum() > 0))  # every move is rejected
        trace.append(opt.order)
    assert trace == [4, 3, 3, 2, 2, 1, 1]
    assert w.tolist() == [0.0, 0.0]


def test_reaches_the_sphere_minimum_within_a_budget() -> None:
    target = torch.tensor([0.3, -0.7, 1.1, 0.2, -0.4], dtype=torch.float64)
    w = torch.zeros(5, dtype=torch.float64)
    opt = tzb.AdaptiveOrderWalk([w], lr=0.3, adapt=1.2, seed=3)
    while opt.nfev < 600:
        loss = opt.step(lambda: ((w - target) ** 2).sum())
    assert float(loss) < 1e-6
    torch.testing.assert_close(w, target, atol=1e-3, rtol=0)


def test_state_dict_round_trip_continues_the_same_run() -> None:
    def run(opt: tzb.AdaptiveOrderWalk, w: torch.Tensor, n: int) -> list[int]:
        trace = []
        for _ in range(n):
            opt.step(lambda: (A * w * w).sum())
            trace.append(opt.order)
        return trace

    w1 = torch.tensor(X0, dtype=torch.float64)
    a = tzb.AdaptiveOrderWalk([w1], lr=0.2, seed=5)
    run(a, w1, 30)
    saved = a.state_dict()
    w2 = w1.clone()
    b = tzb.AdaptiveOrderWalk([w2], lr=0.2, seed=99)
    b.load_state_dict(saved)
    assert run(a, w1, 30) == run(b, w2, 30)
    assert torch.equal(w1, w2)


def test_bad_options_are_named() -> None:
    w = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="start_order"):
        tzb.AdaptiveOrderWalk([w], max_order=2, start_order=3)
    with pytest.raises(ValueError, match="retries"):
        tzb.AdaptiveOrderWalk([w], retries=0)
    with pytest.raises(TypeError, match="convex"):
        tzb.AdaptiveOrderWalk([w], convex=1)  # type: ignore[arg-type]
