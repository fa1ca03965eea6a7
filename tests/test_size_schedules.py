"""Growing populations: the schedules themselves, and ParticleSwarm, EvolutionStrategy and EKI following them."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.zeroth_order.schedules import resolve_size_schedule

INERTIA, COGNITIVE, SOCIAL = 0.7, 1.4, 1.6


def _sphere(w: torch.Tensor) -> Any:
    return lambda: ((w - 0.3) ** 2).sum()


def test_named_and_parametrized_schedules_give_the_documented_sizes() -> None:
    assert [tzb.LinearGrowth(3, by=2, every=2)(t) for t in range(6)] == [3, 3, 5, 5, 7, 7]
    assert [tzb.GeometricGrowth(4, factor=3.0, every=1, limit=50)(t) for t in range(5)] == [4, 12, 36, 50, 50]
    linear = resolve_size_schedule("linear", 5, "n_particles", "ParticleSwarm")
    assert [linear(t) for t in (0, 1, 14, 15, 100)] == [5, 6, 19, 20, 20]  # one per step up to 4 * base
    geometric = resolve_size_schedule("geometric", 3, "n_particles", "ParticleSwarm")
    assert [geometric(t) for t in (0, 9, 10, 20, 30, 10**6)] == [3, 3, 6, 12, 24, 24]  # x2 every 10, up to 8 * base
    with pytest.raises(ValueError, match="size_schedule"):
        tzb.ParticleSwarm([torch.zeros(2)], size_schedule="cubic")
    with pytest.raises(TypeError, match="size_schedule"):
        tzb.ParticleSwarm([torch.zeros(2)], size_schedule=3)  # type: ignore[arg-type]
    opt = tzb.EvolutionStrategy([torch.zeros(2)], n_parents=4, size_schedule=lambda t: 3)
    with pytest.raises(ValueError, match=r"size_schedule\(0\) for n_offspring expected an integer >= 4"):
        opt.step(lambda: 0.0)


def test_swarm_size_and_evaluations_follow_the_schedule() -> None:
    sizes = [3, 3, 5, 5, 5, 8, 12]
    w = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt = tzb.ParticleSwarm([w], n_particles=3, size_schedule=lambda t: sizes[t], seed=0)
    trace, counts = [], []
    for _ in sizes:
        opt.step(_sphere(w))
        trace.append(opt.method_state["positions"].shape[0])
        counts.append(opt.nfev)
    assert trace == sizes
    assert counts == list(np.cumsum(sizes))  # the first step's particle 0 is the start the base evaluated


def test_evolution_strategy_offspring_follow_the_schedule() -> None:
    w = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt = tzb.EvolutionStrategy([w], n_parents=2, n_offspring=4, size_schedule="linear", seed=0)
    counts = []
    for _ in range(6):
        opt.step(_sphere(w))
        counts.append(opt.nfev)
    assert counts == list(1 + np.cumsum([4, 5, 6, 7, 8, 9]))  # one evaluation of the start, then 4 + t per step


def test_a_grown_swarm_keeps_its_members_and_adds_new_ones_as_documented() -> None:
    w = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    opt = tzb.ParticleSwarm(
        [w], 4, INERTIA, COGNITIVE, SOCIAL, init_std=0.5, size_schedule=lambda t: 4 if t < 3 else 7, seed=2
    )
    closure = _sphere(w)
    for _ in range(3):
        opt.step(closure)
    st = opt.method_state
    X, V, P, pf = (st[k].clone() for k in ("positions", "velocities", "pbest", "pbest_f"))
    gen = torch.Generator().set_state(opt.rng.get("cpu").get_state())
    opt.step(closure)  # step 3: the swarm grows from 4 to 7
    # the written-out update of the old members, with the generator replayed
    r1 = torch.rand((4, 3), generator=gen, dtype=torch.float64)
    r2 = torch.rand((4, 3), generator=gen, dtype=torch.float64)
    g = P[int(torch.argmin(pf))]
    V_hand = INERTIA * V + COGNITIVE * r1 * (P - X) + SOCIAL * r2 * (g - X)
    X_hand = X + V_hand
    new_hand = g + 0.5 * torch.randn((3, 3), generator=gen, dtype=torch.float64)
    f_hand = ((X_hand - 0.3) ** 2).sum(1)
    st = opt.method_state
    torch.testing.assert_close(st["positions"][:4], X_hand, rtol=0, atol=1e-15)
    torch.testing.assert_close(st["velocities"][:4], V_hand, rtol=0, atol=1e-15)
    better = f_hand < pf
    torch.testing.assert_close(st["pbest"][:4], torch.where(better[:, None], X_hand, P), rtol=0, atol=1e-15)
    torch.testing.assert_close(st["pbest_f"][:4], torch.where(better, f_hand, pf), rtol=0, atol=1e-14)
    # the added members: placed like the initial swarm around the incumbent, at rest, their start as personal best
    torch.testing.assert_close(st["positions"][4:], new_hand, rtol=0, atol=1e-15)
    assert torch.equal(st["velocities"][4:], torch.zeros(3, 3, dtype=torch.float64))
    assert torch.equal(st["pbest"][4:], st["positions"][4:])
    torch.testing.assert_close(st["pbest_f"][4:], ((new_hand - 0.3) ** 2).sum(1), rtol=0, atol=1e-14)
    assert opt.nfev == 4 * 3 + 7


def test_raising_n_particles_between_steps_grows_the_swarm() -> None:
    w = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt = tzb.ParticleSwarm([w], n_particles=4, seed=0)
    opt.step(_sphere(w))
    opt.n_particles = 6  # raised a shape error before sizes could change
    opt.step(_sphere(w))
    assert opt.method_state["positions"].shape == (6, 2) and opt.nfev == 4 + 6


def test_ensemble_kalman_grows_by_its_schedule_around_the_mean() -> None:
    log: list[torch.Tensor] = []
    w = torch.tensor([1.0, -2.0], dtype=torch.float64)

    def forward() -> torch.Tensor:
        log.append(w.clone())
        return torch.stack([w[0] + w[1], w[0] - 2 * w[1], 3 * w[1]])

    opt = tzb.EnsembleKalmanInversion(
        [w], 3, forward=forward, target=torch.tensor([1.0, 2.0, 0.0]), size_schedule=lambda t: 3 if t < 2 else 5, seed=0
    )
    opt.step()
    opt.step()
    assert opt.ensemble is not None
    before = opt.ensemble.clone()
    log.clear()
    opt.step()  # grows to 5: the 3 particles move as they were, 2 new ones join around the mean
    evaluated = torch.stack(log)
    assert evaluated.shape == (5, 2) and torch.equal(evaluated[:3], before)
    assert opt.ensemble.shape == (5, 2)
    assert float((evaluated[3:] - before.mean(0)).abs().max()) < 5.0  # init_std 1 around the mean


@pytest.mark.parametrize("name", ["ParticleSwarm", "EnsembleKalmanInversion", "EvolutionStrategy"])
def test_state_dict_round_trip_mid_growth(name: str) -> None:
    def fresh() -> tuple[torch.Tensor, tzb.DerivativeFreeOptimizer]:
        w = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
        if name == "EvolutionStrategy":
            return w, tzb.EvolutionStrategy([w], n_parents=2, n_offspring=3, size_schedule="linear", seed=5)
        return w, getattr(tzb, name)([w], 3, size_schedule="linear", seed=5)

    w, opt = fresh()
    for _ in range(3):
        opt.step(_sphere(w))
    buffer = io.BytesIO()
    torch.save({"w": w.clone(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    expected = [float(opt.step(_sphere(w))) for _ in range(3)]
    w2, opt2 = fresh()
    w2.copy_(saved["w"])
    opt2.load_state_dict(saved["opt"])
    assert [float(opt2.step(_sphere(w2))) for _ in range(3)] == expected
    assert torch.equal(w2, w)
    if name != "EvolutionStrategy":
        key = "positions" if name == "ParticleSwarm" else "ensemble"
        assert opt2.method_state[key].shape[0] == 3 + 5  # linear: one more per step; the sixth step has index 5
        assert torch.equal(opt2.method_state[key], opt.method_state[key])
