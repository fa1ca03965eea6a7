"""Random walks, annealing, particle swarm, evolution strategy and swarms: hand-computed behaviour."""

from __future__ import annotations

import math

import pytest
import torch
from dfo_helpers import PROBLEMS, Spy, flat_values

import torchzero_bridge as tzb
from torchzero_bridge.testing.functions import make_closure


def _decreasing():
    """A closure whose loss strictly decreases on every call: every move is kept."""
    count = iter(range(10**9))
    return lambda: -float(next(count))


def _noise(seed: int, n: int, steps: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(n, generator=g, dtype=torch.float64) for _ in range(steps)])


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_random_walk_of_order_k_integrates_noise_k_times(order: int) -> None:
    a = torch.tensor([0.5, -1.0], dtype=torch.float64)
    b = torch.tensor([2.0], dtype=torch.float64)
    lr = 0.3
    opt = tzb.RandomWalk([a, b], lr=lr, order=order, generator=torch.Generator().manual_seed(11))
    closure = _decreasing()
    steps = 7
    noise = lr * _noise(11, 3, steps)
    expected = noise
    for _ in range(order):  # integrate k times: cumulative sums
        expected = torch.cumsum(expected, dim=0)
    start = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    for t in range(steps):
        opt.step(closure)
        torch.testing.assert_close(torch.cat([a, b]), start + expected[t], rtol=0, atol=1e-12)


def test_random_walk_tries_the_opposite_move() -> None:
    x = torch.tensor([0.0], dtype=torch.float64)
    opt = tzb.RandomWalk([x], lr=0.5, order=2, generator=torch.Generator().manual_seed(4))
    z = _noise(4, 1, 12)[:, 0]
    velocity, position = 0.0, 0.0
    for t in range(12):
        opt.step(lambda: float(x[0]))  # minimize x: a move is kept iff it goes left
        d = velocity + 0.5 * float(z[t])
        velocity = -abs(d)  # kept as is when negative, else reversed (the opposite move)
        position += velocity
        assert float(x[0]) == pytest.approx(position, abs=1e-12)


def test_random_walk_undo_resets_the_velocity() -> None:
    x = torch.tensor([0.0], dtype=torch.float64)
    opt = tzb.RandomWalk([x], lr=0.5, order=2, on_reject="undo", generator=torch.Generator().manual_seed(4))
    z = _noise(4, 1, 12)[:, 0]
    velocity, position = 0.0, 0.0
    for t in range(12):
        opt.step(lambda: float(x[0]))
        d = velocity + 0.5 * float(z[t])
        if d < 0:
            velocity, position = d, position + d
        else:
            velocity = 0.0  # undone and back at rest
        assert float(x[0]) == pytest.approx(position, abs=1e-12)


def test_random_walk_adapt_follows_the_success_rule() -> None:
    x = torch.tensor([0.0, 0.0], dtype=torch.float64)
    opt = tzb.RandomWalk([x], lr=1.0, adapt=2.0, target_rate=0.2, on_reject="undo", seed=0)
    opt.step(_decreasing())
    opt.step(_decreasing())  # a fresh counter restarts at 0, above the incumbent -1: the move fails
    st = opt.method_state
    assert st["scale"] == pytest.approx(2.0 * 2.0 ** (-0.25))


def test_second_order_walk_turns_a_unit_direction() -> None:
    a = torch.tensor([1.0, 1.0], dtype=torch.float64)
    b = torch.tensor([-1.0], dtype=torch.float64)
    turn, lr = 0.4, 0.25
    opt = tzb.SecondOrderRandomWalk([a, b], lr=lr, turn=turn, generator=torch.Generator().manual_seed(9))
    z = _noise(9, 3, 6)
    u = z[0] / torch.linalg.vector_norm(z[0])  # drawn on the first step, before the first turn
    x = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    closure = _decreasing()
    for t in range(1, 6):
        opt.step(closure)
        u = u + turn * z[t] / math.sqrt(3)
        u = u / torch.linalg.vector_norm(u)
        x = x + lr * u
        torch.testing.assert_close(torch.cat([a, b]), x, rtol=0, atol=1e-12)


def test_annealing_cools_and_keeps_the_best_while_the_chain_wanders() -> None:
    model = PROBLEMS["rastrigin"].model()
    spy = Spy(model)
    opt = tzb.SimulatedAnnealing(model.parameters(), lr=1.0, init_temp=100.0, cooling=0.9, seed=0)
    for _ in range(20):
        loss = float(opt.step(spy))
    assert opt.temperature == pytest.approx(100.0 * 0.9**20)
    st = opt.method_state
    assert st["current_f"] > loss  # the hot chain accepted uphill moves ...
    assert loss == min(spy.fs)  # ... while the parameters hold the best point seen
    assert PROBLEMS["rastrigin"].numpy_f(flat_values(model)) == pytest.approx(loss)


def test_annealing_at_zero_temperature_only_descends() -> None:
    model = PROBLEMS["rosen"].model()
    opt = tzb.SimulatedAnnealing(model.parameters(), lr=0.2, init_temp=1e-300, cooling=0.5, seed=0)
    closure = make_closure(model)
    for _ in range(30):
        opt.step(closure)
        st = opt.method_state
        assert st["current_f"] == st["best_f"]


def test_particle_swarm_stays_inside_bounds() -> None:
    model = PROBLEMS["sphere"].model()
    spy = Spy(model)
    opt = tzb.ParticleSwarm(model.parameters(), n_particles=10, bounds=(-2.0, 0.3), seed=0)
    for _ in range(30):
        opt.step(spy)
    assert all(((x >= -2.0) & (x <= 0.3)).all() for x in spy.xs[1:])
    assert flat_values(model) == pytest.approx([0.3, 0.3, 0.3], abs=1e-3)  # the minimum 0.5 is outside


def test_evolution_strategy_plus_selection_never_loses_parents() -> None:
    model = PROBLEMS["rastrigin"].model()
    opt = tzb.EvolutionStrategy(model.parameters(), lr=1.0, n_parents=3, n_offspring=6, plus=True, seed=0)
    closure = make_closure(model)
    worst = math.inf
    for _ in range(30):
        opt.step(closure)
        fitness = opt.method_state["fitness"]
        assert float(fitness.max()) <= worst
        worst = float(fitness.max())


def test_evolution_strategy_self_adapts_step_sizes() -> None:
    model = PROBLEMS["sphere"].model()
    opt = tzb.EvolutionStrategy(model.parameters(), lr=1.0, seed=0)
    closure = make_closure(model)
    for _ in range(80):
        opt.step(closure)
    sigmas = opt.method_state["sigmas"]
    assert float(sigmas.max()) < 1e-3  # shrank with the distance to the minimum
    assert opt.best_loss < 1e-8


class TestSwarmOfOptimizers:
    def test_members_step_their_own_optimizers(self) -> None:
        model = PROBLEMS["rosen"].model()
        opt = tzb.SwarmOfOptimizers(model.parameters(), lambda q: torch.optim.Adam(q, lr=0.01), n=3, seed=0)
        closure = make_closure(model)
        opt.step(closure)
        assert len({id(m) for m in opt.members}) == 3
        assert all(len(m.state) == 2 for m in opt.members)  # Adam state for both tensors of each member
        first = [m.state[next(iter(m.state))]["exp_avg"].clone() for m in opt.members]
        assert not torch.equal(first[0], first[1])  # different copies, different gradients

    def test_laggards_are_replaced_by_a_crossover_of_the_best_two(self) -> None:
        model = PROBLEMS["rastrigin"].model()
        opt = tzb.SwarmOfOptimizers(
            model.parameters(), lambda q: torch.optim.SGD(q, lr=0.0), n=4, patience=1, init_std=1.0, seed=0
        )
        closure = make_closure(model)
        opt.step(closure)
        st = opt.method_state
        before = st["positions"].clone()
        members = list(opt.members)
        opt.step(closure)  # SGD with lr=0 does not move: only replacements change positions
        order = torch.argsort(st["fitness"], stable=True)
        replaced = [i for i in range(4) if opt.members[i] is not members[i]]
        assert len(replaced) == 2  # the worse half, behind for `patience` = 1 step
        best_two = before[order[0]], before[order[1]]
        for i in replaced:
            for c in range(3):
                assert st["positions"][i, c] in (best_two[0][c], best_two[1][c])

    def test_gravity_pulls_members_toward_the_best(self) -> None:
        model = PROBLEMS["sphere"].model()
        opt = tzb.SwarmOfOptimizers(
            model.parameters(), lambda q: torch.optim.SGD(q, lr=0.0), n=3, gravity=0.25, patience=100, seed=0
        )
        closure = make_closure(model)
        opt.step(closure)
        st = opt.method_state
        before = st["positions"].clone()
        opt.step(closure)
        best = before[int(torch.argmin(st["fitness"]))]
        torch.testing.assert_close(st["positions"], before + 0.25 * (best - before))

    def test_factory_must_build_an_optimizer_over_the_given_parameters(self) -> None:
        w = torch.zeros(2, requires_grad=True)
        with pytest.raises(
            TypeError, match=r"SwarmOfOptimizers: optimizers_factory must build a torch\.optim\.Optimizer"
        ):
            tzb.SwarmOfOptimizers([w], lambda q: None)
        other = torch.zeros(2, requires_grad=True)
        with pytest.raises(ValueError, match="optimizers_factory built SGD over other tensors"):
            tzb.SwarmOfOptimizers([w], lambda q: torch.optim.SGD([other], lr=0.1))
        with pytest.raises(TypeError, match="optimizers_factory is an already-constructed SGD; every member needs"):
            tzb.SwarmOfOptimizers([w], torch.optim.SGD([w], lr=0.1))

    def test_class_and_kwargs_pair_and_forwarded_group_options(self) -> None:
        a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
        swarm = tzb.SwarmOfOptimizers(
            [{"params": [a], "lr": 0.5, "bounds": (-1, 1)}, {"params": [b]}], (tzb.RandomWalk, {"lr": 0.1}), n=2
        )
        member = swarm.members[0]
        assert isinstance(member, tzb.RandomWalk)
        assert [g["lr"] for g in member.param_groups] == [0.5, 0.1]  # group options reach the members
        assert all(g["bounds"] is None for g in member.param_groups)  # the swarm keeps the bounds itself


@pytest.mark.parametrize("cls", [tzb.RandomWalk, tzb.SecondOrderRandomWalk])
def test_adapted_walk_says_when_its_step_can_no_longer_move(cls) -> None:
    w = torch.tensor([0.05, -0.05], dtype=torch.float64)
    calls = []

    def plateau() -> float:  # flat around the start: every move is rejected and the scale shrinks
        calls.append(1)
        return float(torch.floor(w.abs() * 10).sum())

    opt = cls([w], lr=0.1, adapt=2.0, seed=0)
    with pytest.warns(tzb.errors.ConvergedWarning, match=f"{cls.__name__} has converged"):
        while opt.nfev < 100_000 and not opt.converged:
            opt.step(plateau)
    # the scale falls by 2 ** -0.25 per rejected step: 0.1 -> below 0.05 * 2 ** -53 in about 230 steps
    assert opt.converged and opt.nfev < 1000
    step = 0.1 * opt.method_state["scale"]
    assert step < 0.05 * 2.0**-52 and w.tolist() == [0.05, -0.05]
    ran = len(calls)
    opt.step(plateau)
    assert len(calls) == ran


def test_fixed_step_walk_never_claims_convergence() -> None:
    w = torch.tensor([0.05], dtype=torch.float64)
    opt = tzb.RandomWalk([w], lr=0.1, seed=0)
    for _ in range(300):
        opt.step(lambda: float(torch.floor(w.abs() * 10).sum()))
    assert not opt.converged and opt.nfev == 1 + 600
