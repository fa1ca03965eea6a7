"""init= of the population methods: perturb (unchanged default), fitted, ModuleInit, callables."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.zeroth_order.initializers import resolve_init

POPULATION = {
    "ParticleSwarm": lambda p, **kw: tzb.ParticleSwarm(p, n_particles=5, **kw),
    "EvolutionStrategy": lambda p, **kw: tzb.EvolutionStrategy(p, n_parents=2, n_offspring=5, **kw),
    "SwarmOfOptimizers": lambda p, **kw: tzb.SwarmOfOptimizers(p, lambda q: torch.optim.SGD(q, lr=0.01), n=5, **kw),
    "EnsembleKalmanInversion": lambda p, **kw: tzb.EnsembleKalmanInversion(p, n_particles=5, **kw),
}


def _recording(params: list[torch.Tensor], seen: list[torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A closure of a smooth loss that keeps every point it is evaluated at (flattened, float64)."""

    def closure(backward: bool = True) -> torch.Tensor:
        seen.append(torch.cat([p.detach().reshape(-1).double() for p in params]))
        loss = sum(((p - 0.3) ** 2).sum() for p in params)
        assert isinstance(loss, torch.Tensor)
        if backward and loss.requires_grad:
            for p in params:
                p.grad = None
            loss.backward()
        return loss

    return closure


def _first_population(name: str, params: list[torch.Tensor], **kw: Any) -> torch.Tensor:
    """The members the method evaluates at its first step (member 0 first), as rows."""
    seen: list[torch.Tensor] = []
    opt = POPULATION[name](params, **kw)
    opt.step(_recording(params, seen))
    if name == "SwarmOfOptimizers":  # the base evaluates the start, then each member once (SGD)
        return torch.stack(seen[1:])
    return torch.stack(seen)  # the start (by the base), then members 1.. (member 0 is the start)


# ---------------------------------------------------------------- the default is unchanged


def test_default_perturb_draws_exactly_what_the_methods_drew_before() -> None:
    """The first populations with seed 0, computed by hand from the generator as the methods always drew them."""
    start = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    n = start.numel()
    for name, m, std in (("ParticleSwarm", 5, 1.0), ("SwarmOfOptimizers", 5, 0.1), ("EnsembleKalmanInversion", 5, 1.0)):
        g = torch.Generator().manual_seed(0)
        if name == "SwarmOfOptimizers":  # one seed per member optimizer, drawn at construction
            torch.randint(0, 2**62, (m,), generator=g)
        z = torch.randn((m, n), generator=g, dtype=torch.float64)
        expected = start + std * z
        expected[0] = start
        for init in ({}, {"init": "perturb"}):
            got = _first_population(name, [start.clone()], seed=0, **init)
            assert torch.equal(got, expected), (name, init)
    # evolution strategy: parents at the start; the first brood is start + sigma * lr * z
    g = torch.Generator().manual_seed(0)
    sigma = torch.exp(torch.randn(5, generator=g, dtype=torch.float64) / math.sqrt(2.0 * n))
    expected = start + sigma[:, None] * torch.randn((5, n), generator=g, dtype=torch.float64)
    got = _first_population("EvolutionStrategy", [start.clone()], seed=0)
    assert torch.equal(got[0], start) and torch.equal(got[1:], expected)


def test_default_particle_swarm_in_bounds_is_uniform_as_before() -> None:
    w = torch.zeros(3, dtype=torch.float64)
    opt = tzb.ParticleSwarm([{"params": [w], "bounds": (-2.0, 4.0)}], n_particles=6, seed=0)
    opt.step(lambda: (w**2).sum())
    g = torch.Generator().manual_seed(0)
    torch.randn((6, 3), generator=g, dtype=torch.float64)  # drawn first, unused where bounded
    expected = -2.0 + 6.0 * torch.rand((6, 3), generator=g, dtype=torch.float64)
    assert torch.equal(opt.method_state["positions"][1:], expected[1:])


# ---------------------------------------------------------------- fitted


def test_fitted_population_matches_each_tensors_mean_and_std() -> None:
    gen = torch.Generator().manual_seed(1)
    a = 3.0 + 0.5 * torch.randn(400, generator=gen, dtype=torch.float64)
    b = -1.0 + 2.0 * torch.randn(20, 15, generator=gen, dtype=torch.float64)
    single = torch.tensor([7.0], dtype=torch.float64)  # one entry: nothing to fit
    flat_tensor = torch.full((10,), -4.0, dtype=torch.float64)  # zero spread: nothing to fit
    space = FlatSpace([{"params": [a, b, single, flat_tensor]}], allow_integer=False, owner="test")
    X = tzb.FittedInit().sample(space, space.read(), 3000, torch.Generator().manual_seed(0), 0.25)
    xa, xb, xs, xf = X[:, :400], X[:, 400:700], X[:, 700], X[:, 701:]
    assert abs(float(xa.mean()) - float(a.mean())) < 0.01 and abs(float(xa.std()) / float(a.std()) - 1) < 0.01
    assert abs(float(xb.mean()) - float(b.mean())) < 0.02 and abs(float(xb.std()) / float(b.std()) - 1) < 0.01
    # fallback: value + scale * N(0, 1) with scale = the optimizer's spread (0.25 here)
    assert abs(float(xs.mean()) - 7.0) < 0.02 and abs(float(xs.std()) - 0.25) < 0.02
    assert abs(float(xf.mean()) + 4.0) < 0.01 and abs(float(xf.std()) - 0.25) < 0.01
    # entries are independent draws, not one shared offset per row
    assert float(xa.std(1).mean()) > 0.45


def test_fitted_integer_and_boolean_tensors_keep_their_kind_and_bounds() -> None:
    k = torch.arange(0, 40, dtype=torch.int64)  # mean 19.5, std ~11.7
    flags = torch.tensor([True] * 30 + [False] * 10)
    space = FlatSpace([{"params": [k, flags], "bounds": (0, 30)}], allow_integer=True, owner="test")
    X = space.project(tzb.FittedInit().sample(space, space.read(), 2000, torch.Generator().manual_seed(0), 1.0))
    xk, xb = X[:, :40], X[:, 40:]
    assert torch.equal(xk, xk.round()) and float(xk.min()) >= 0 and float(xk.max()) <= 30
    assert set(xb.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(xb.mean()) - 0.75) < 0.01  # True with the tensor's fraction of True


@pytest.mark.parametrize("name", list(POPULATION))
def test_fitted_members_follow_the_tensors_with_member_zero_at_the_start(name: str) -> None:
    a = torch.linspace(-3.0, 3.0, 30, dtype=torch.float64)
    b = torch.linspace(10.0, 12.0, 20, dtype=torch.float64)
    start = torch.cat([a, b])
    X = _first_population(name, [a, b], init="fitted", seed=0)
    assert torch.equal(X[0], start)
    assert X.shape == (5, 50)
    others = X[1:]
    assert abs(float(others[:, :30].mean())) < 1.0 and float(others[:, :30].std()) > 1.2  # spread like a (std 1.8)
    assert abs(float(others[:, 30:].mean()) - 11.0) < 0.3 and float(others[:, 30:].std()) < 1.0  # like b (std 0.6)


def test_evolution_strategy_first_brood_is_drawn_by_the_initializer() -> None:
    a = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)
    opt = tzb.EvolutionStrategy([{"params": [a], "lr": 0.5}], n_parents=2, n_offspring=5, init="fitted", seed=0)
    seen: list[torch.Tensor] = []
    opt.step(_recording([a], seen))
    z = torch.randn((5, 6), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)
    expected = start.mean() + start.std() * z
    assert opt.nfev == 5  # the start's loss is reused for child 0
    assert torch.equal(torch.stack(seen)[0], start) and torch.allclose(torch.stack(seen)[1:], expected[1:])
    assert opt.method_state["sigmas"].tolist() == [1.0, 1.0]
    opt.step(_recording([a], seen))  # later broods are mutations of the parents again
    assert opt.nfev == 10


# ---------------------------------------------------------------- ModuleInit


def _net() -> torch.nn.Module:
    torch.manual_seed(5)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def test_module_init_members_are_the_documented_seeded_resets() -> None:
    model = _net()
    start = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    before = torch.get_rng_state()
    opt = tzb.ParticleSwarm(model.parameters(), n_particles=4, init=tzb.ModuleInit(model), seed=0)
    opt.step(lambda: sum((p**2).sum() for p in model.parameters()))
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is untouched
    X = opt.method_state["positions"]
    seeds = torch.randint(0, 2**62, (4,), generator=torch.Generator().manual_seed(0)).tolist()
    for k in range(1, 4):
        torch.manual_seed(seeds[k])
        fresh = copy.deepcopy(model)
        for sub in fresh.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()  # type: ignore[operator]
        assert torch.equal(X[k], torch.cat([p.detach().reshape(-1) for p in fresh.parameters()]).double())
    assert torch.equal(X[0], start)
    w1 = X[:, :12]  # first Linear's weights: kaiming-uniform within 1 / sqrt(fan_in)
    assert bool((w1[1:].abs() <= 1 / math.sqrt(3)).all())
    assert len({tuple(row.tolist()) for row in X}) == 4


def test_module_init_accepts_the_module_itself_and_handles_bare_parameters() -> None:
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.scale = torch.nn.Parameter(torch.tensor([2.0, 3.0, 4.0]))  # no reset_parameters owns it

    model = Scaled()
    for others, kept in (("center", True), ("fitted", False)):
        opt = tzb.EnsembleKalmanInversion(model.parameters(), n_particles=3, init=tzb.ModuleInit(model, others), seed=0)
        X = opt._initial(opt._space(), opt._space().read(), 3)
        # named_parameters order: the module's own `scale` first, then lin.weight, lin.bias
        assert bool((X[:, :3] == torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)).all()) is kept
        assert not torch.equal(X[0, 3:], X[1, 3:]) and bool((X[:, 3:].abs() <= 1 / math.sqrt(2)).all())
    plain = tzb.ParticleSwarm(model.lin.parameters(), n_particles=3, init=model.lin, seed=0)
    assert isinstance(plain._init, tzb.ModuleInit)


def test_module_init_errors_name_the_tensor() -> None:
    model = torch.nn.Linear(2, 2)
    stray = torch.zeros(3)
    with pytest.raises(ValueError, match=r"ParticleSwarm: init=ModuleInit: 'stray' \(shape \(3,\)"):
        tzb.ParticleSwarm(
            [{"params": [model.weight, stray], "param_names": ["weight", "stray"]}], init=tzb.ModuleInit(model)
        )
    bare = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="has reset_parameters"):
        tzb.SwarmOfOptimizers(bare.parameters(), lambda q: torch.optim.SGD(q, lr=0.1), init=tzb.ModuleInit(bare))
    with pytest.raises(TypeError, match=r"ModuleInit: module expected a torch\.nn\.Module"):
        tzb.ModuleInit([model])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="others expected"):
        tzb.ModuleInit(model, others="zeros")


# ---------------------------------------------------------------- callables, seeds, errors


def test_callable_init_and_growing_swarm_use_the_initializer() -> None:
    calls: list[int] = []

    def init(count: int, generator: torch.Generator) -> torch.Tensor:
        calls.append(count)
        return torch.arange(count * 2, dtype=torch.float32).reshape(count, 2) + 100.0

    w = torch.zeros(2, dtype=torch.float64)
    opt = tzb.ParticleSwarm([w], n_particles=3, init=init, size_schedule=lambda t: 3 if t == 0 else 5, seed=0)
    opt.step(lambda: (w**2).sum())
    X = opt.method_state["positions"]
    assert calls == [3] and X[1:].tolist() == [[102.0, 103.0], [104.0, 105.0]] and X[0].tolist() == [0.0, 0.0]
    opt.step(lambda: (w**2).sum())
    assert calls == [3, 2] and opt.method_state["positions"][3:].tolist() == [[100.0, 101.0], [102.0, 103.0]]


@pytest.mark.parametrize("init", ["fitted", "module", "callable"])
def test_same_seed_same_population(init: str) -> None:
    def populations(seed: int) -> torch.Tensor:
        model = _net()
        spec: Any = {
            "fitted": "fitted",
            "module": model,
            "callable": lambda k, g: torch.randn(k, 26, generator=g),
        }[init]
        opt = tzb.SwarmOfOptimizers(
            model.parameters(), lambda q: torch.optim.SGD(q, lr=0.01), n=4, init=spec, seed=seed
        )
        opt.step(lambda: sum((p**2).sum() for p in model.parameters()))
        return torch.stack([m for m in opt.method_state["positions"]])

    a, b, c = populations(3), populations(3), populations(4)
    assert torch.equal(a, b) and not torch.equal(a[1:], c[1:])


@pytest.mark.parametrize("name", list(POPULATION))
def test_bad_init_is_refused_at_construction(name: str) -> None:
    w = torch.zeros(2)
    with pytest.raises(ValueError, match=rf"{name}: init expected one of \('perturb', 'fitted'\).*got 'kaiming'"):
        POPULATION[name]([w], init="kaiming")
    with pytest.raises(TypeError, match=rf"{name}: init expected .* got int"):
        POPULATION[name]([w], init=3)
    with pytest.raises(TypeError, match=rf"{name}: init expected a callable f\(count, generator\)"):
        POPULATION[name]([w], init=lambda count: torch.zeros(count, 2))


def test_a_callable_returning_the_wrong_population_is_named() -> None:
    w = torch.zeros(2)
    opt = tzb.ParticleSwarm([w], n_particles=3, init=lambda k, g: torch.zeros(k, 5))
    with pytest.raises(ValueError, match=r"ParticleSwarm: init returned shape \(3, 5\), expected \(3, 2\)"):
        opt.step(lambda: (w**2).sum())
    assert w.tolist() == [0.0, 0.0]
    opt = tzb.ParticleSwarm([w], n_particles=3, init=lambda k, g: [[0.0, 0.0]] * k)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="init returned list"):
        opt.step(lambda: (w**2).sum())
    opt = tzb.ParticleSwarm([w], n_particles=3, init=lambda k, g: torch.full((k, 2), math.nan))
    with pytest.raises(ValueError, match="non-finite"):
        opt.step(lambda: (w**2).sum())
    assert resolve_init("perturb", "x").__class__ is tzb.PerturbInit


def test_init_std_that_the_initializer_does_not_use_is_reported() -> None:
    model = torch.nn.Linear(2, 2)
    with pytest.warns(tzb.IgnoredOptionWarning, match=r"init_std is ignored: init=ModuleInit\(Linear"):
        tzb.ParticleSwarm(model.parameters(), init=model, init_std=0.5)
    with pytest.warns(tzb.IgnoredOptionWarning, match="init_std is ignored"):
        tzb.ParticleSwarm(model.parameters(), init=lambda k, g: torch.zeros(k, 6), init_std=0.5)
    tzb.ParticleSwarm(model.parameters(), init=tzb.ModuleInit(model, others="fitted"), init_std=0.5)  # used: quiet


def test_a_failed_first_brood_is_drawn_again_and_checkpoints_round_trip() -> None:
    w = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64)
    opt = tzb.EvolutionStrategy([w], n_parents=2, n_offspring=4, init="fitted", seed=0)
    calls = [0]

    def flaky() -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 2:  # the first child of the first brood (a raising run is not counted)
            raise RuntimeError("lost")
        return (w**2).sum()

    with pytest.raises(RuntimeError, match="lost"):
        opt.step(flaky)
    assert opt.method_state["first_brood"] is True
    w2 = w.clone()
    twin = tzb.EvolutionStrategy([w2], n_parents=2, n_offspring=4, init="fitted", seed=5)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    opt.step(flaky)
    twin.step(lambda: (w2**2).sum())
    assert "first_brood" not in opt.method_state and opt.method_state["sigmas"].tolist() == [1.0, 1.0]
    assert opt.nfev == 1 + 3 and torch.equal(opt.method_state["parents"], twin.method_state["parents"])
