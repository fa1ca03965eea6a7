"""Frozen ``nn.Parameter`` s (``requires_grad=False``) are left untouched by every optimizer.

The truth is the tensor itself: its bytes before and after a step, next to a trainable tensor
that must have moved. A plain tensor without ``requires_grad`` is optimized (derivative-free
search over a bare tensor is a normal use).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.errors import FrozenParameterWarning

B = (-2.0, 2.0)
Factory = Callable[[list[dict]], torch.optim.Optimizer]

SGD = (torch.optim.SGD, {"lr": 0.05})

# every public optimizer class, each with a budget small enough for a quick test
FACTORIES: dict[str, Factory] = {
    "MinimizeWrapper": lambda g: tzb.MinimizeWrapper(g, method="L-BFGS-B"),
    "BasinHoppingWrapper": lambda g: tzb.BasinHoppingWrapper(g, niter=2, rng=0),
    "DifferentialEvolutionWrapper": lambda g: tzb.DifferentialEvolutionWrapper(g, maxiter=3, popsize=4, rng=0),
    "DualAnnealingWrapper": lambda g: tzb.DualAnnealingWrapper(g, maxiter=3, rng=0),
    "SHGOWrapper": lambda g: tzb.SHGOWrapper(g, n=16, iters=1),
    "DirectWrapper": lambda g: tzb.DirectWrapper(g, maxfun=60),
    "NevergradWrapper": lambda g: tzb.NevergradWrapper(g, "OnePlusOne", budget=20, seed=0),
    "OptunaWrapper": lambda g: tzb.OptunaWrapper(g, n_trials=8, seed=0),
    "FDM": lambda g: tzb.FDM(g, opt=SGD),
    "RandomizedFDM": lambda g: tzb.RandomizedFDM(g, opt=SGD, seed=0),
    "SPSA": lambda g: tzb.SPSA(g, opt=SGD, seed=0),
    "RDSA": lambda g: tzb.RDSA(g, opt=SGD, seed=0),
    "GaussianSmoothing": lambda g: tzb.GaussianSmoothing(g, opt=SGD, seed=0),
    "MeZO": lambda g: tzb.MeZO(g, opt=SGD, seed=0),
    "ForwardGradient": lambda g: tzb.ForwardGradient(g, opt=SGD, seed=0),
    "RandomGrad": lambda g: tzb.RandomGrad(g, lr=0.05, seed=0),
    "GradChain": lambda g: tzb.GradChain(g, [tzb.SPSA(seed=0), SGD]),
    "RandomSearch": lambda g: tzb.RandomSearch(g, n_samples=8, seed=0),
    "ShrinkingRandomSearch": lambda g: tzb.ShrinkingRandomSearch(g, lr=0.5, n_samples=8, seed=0),
    "GridSearch": lambda g: tzb.GridSearch(g, step=0.5, batch_size=16),
    "SequentialSearch": lambda g: tzb.SequentialSearch(g, lr=0.5),
    "RandomWalk": lambda g: tzb.RandomWalk(g, lr=0.3, seed=0),
    "SecondOrderRandomWalk": lambda g: tzb.SecondOrderRandomWalk(g, lr=0.3, seed=0),
    "SimulatedAnnealing": lambda g: tzb.SimulatedAnnealing(g, lr=0.3, seed=0),
    "ParticleSwarm": lambda g: tzb.ParticleSwarm(g, n_particles=6, seed=0),
    "EvolutionStrategy": lambda g: tzb.EvolutionStrategy(g, lr=0.3, seed=0),
    "SwarmOfOptimizers": lambda g: tzb.SwarmOfOptimizers(g, lambda q: tzb.RandomWalk(q, lr=0.3), n=3, seed=0),
}

NEEDS_BOUNDS = {
    "BasinHoppingWrapper",
    "DifferentialEvolutionWrapper",
    "DualAnnealingWrapper",
    "SHGOWrapper",
    "DirectWrapper",
    "OptunaWrapper",
    "RandomSearch",
    "GridSearch",
    "ParticleSwarm",
}
X = torch.linspace(-1.0, 1.0, 16, dtype=torch.float64).reshape(8, 2)
Y = X @ torch.tensor([[0.7], [-0.4]], dtype=torch.float64) + 0.3


def _model() -> torch.nn.Linear:
    model = torch.nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.fill_(-0.5)
    model.bias.requires_grad_(False)
    return model


def _closure(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Callable[..., torch.Tensor]:
    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), Y)
        if backward and loss.requires_grad:
            loss.backward()
        return loss

    return closure


def test_every_public_optimizer_is_listed() -> None:
    optimizers = {
        n
        for n in tzb.__all__
        if isinstance(getattr(tzb, n), type) and issubclass(getattr(tzb, n), torch.optim.Optimizer)
    }
    bases = {"BridgeOptimizer", "DerivativeFreeOptimizer", "GradientEstimator"}
    assert optimizers - bases == set(FACTORIES)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_frozen_parameter_is_left_untouched(name: str) -> None:
    model = _model()
    frozen_before = model.bias.detach().clone()
    weight_before = model.weight.detach().clone()
    groups: list[dict] = [{"params": list(model.parameters())}]
    if name in NEEDS_BOUNDS:
        groups[0]["bounds"] = B
    with pytest.warns(FrozenParameterWarning, match=r"param group 0 holds 1 frozen nn\.Parameter") as caught:
        opt = FACTORIES[name](groups)
    assert len([w for w in caught if w.category is FrozenParameterWarning]) == 1  # said once
    assert caught[0].filename == __file__  # attributed to the user's line
    assert all(p is not model.bias for g in opt.param_groups for p in g["params"])
    closure = _closure(model, opt)
    for _ in range(10):
        opt.step(closure)
        assert torch.equal(model.bias.detach(), frozen_before)
        if not torch.equal(model.weight.detach(), weight_before):
            break
    assert not torch.equal(model.weight.detach(), weight_before)  # the trainable tensor moved
    assert model.bias.grad is None


def test_plain_tensor_without_requires_grad_is_optimized() -> None:
    w = torch.zeros(2, dtype=torch.float64)
    opt = tzb.RandomSearch([w], bounds=B, n_samples=16, seed=0)
    opt.step(lambda backward=True: ((w - 1.0) ** 2).sum())
    assert not torch.equal(w, torch.zeros(2, dtype=torch.float64))


def test_groups_added_later_skip_frozen_too() -> None:
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    opt = tzb.SPSA([a], opt=SGD, seed=0)
    with pytest.warns(FrozenParameterWarning, match="param group 1"):
        opt.add_param_group({"params": [b]})
    assert opt.param_groups[1]["params"] == []


def test_constructed_inner_optimizer_may_list_frozen_parameters() -> None:
    """torchzero's recipe over a model with a frozen tensor: the user's AdamW lists it, nothing moves it."""
    model = _model()
    bias = model.bias.detach().clone()
    with pytest.warns(FrozenParameterWarning):
        opt = tzb.RandomGrad(model.parameters(), lr=1e-2, opt=torch.optim.AdamW(model.parameters(), lr=1e-2), seed=0)
    closure = _closure(model, opt)
    start = float(closure(False))
    for _ in range(20):
        opt.step(closure)
    assert torch.equal(model.bias.detach(), bias) and model.bias.grad is None
    assert float(closure(False)) < start
