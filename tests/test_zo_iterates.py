"""Same algorithm as before the memory rewrite: given the old directions, the iterates are the old ones.

``tests/data/zo_iterates_426a73f.json`` holds ten steps of each estimator as computed by the code
of commit 426a73f (parameters copied, the direction stored, one generator stream per sample).
The rewrite changed only how a direction is generated (per-tensor seeds, Rademacher from 64-bit
words); the directions themselves are tested in ``test_zo_directions.py``. Here each estimator
runs with a sampler that replays the old generator, written out below, and must reproduce the
recorded losses and parameters (float64, 1e-12).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from torchzero_bridge.zeroth_order import RDSA, SPSA, GaussianSmoothing, MeZO, RandomGrad, RandomizedFDM
from torchzero_bridge.zeroth_order.directions import DirectionSampler

FIXTURE = json.loads((Path(__file__).parent / "data" / "zo_iterates_426a73f.json").read_text())


def old_direction(distribution: str, seed: int, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The generator of 426a73f: one CPU generator seeded with the sample seed fills the tensors in order."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in tensors:
        d = torch.empty(t.shape, dtype=t.dtype)
        if distribution == "rademacher":
            d.bernoulli_(0.5, generator=gen).mul_(2.0).sub_(1.0)
        elif distribution == "uniform":
            d.uniform_(-math.sqrt(3.0), math.sqrt(3.0), generator=gen)
        else:
            d.normal_(generator=gen)
        out.append(d)
    if distribution == "sphere":
        total = sum(float(torch.linalg.vector_norm(d, dtype=torch.float64)) ** 2 for d in out)
        factor = math.sqrt(sum(t.numel() for t in tensors) / total)
        out = [d * factor for d in out]
    return out


class OldStream(DirectionSampler):
    """Serves the old generator's direction for every pass over a sample."""

    def pieces(
        self, seed: int, tensors: Any, scale: float = 1.0, only: Callable[[int], bool] | None = None
    ) -> Iterator:
        for i, d in enumerate(old_direction(self.distribution, seed, list(tensors))):
            if only is None or only(i):
                yield i, None, d

    def sphere_scale(self, seed: int, tensors: Any) -> float:
        return 1.0  # old_direction already normalizes


def problem() -> tuple[list[torch.Tensor], Callable[..., torch.Tensor]]:
    g = torch.Generator().manual_seed(123)
    X = torch.randn(16, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(16, 1, generator=g, dtype=torch.float64)
    w1 = torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    b1 = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_(True)
    w2 = torch.randn(1, 4, generator=g, dtype=torch.float64).requires_grad_(True)

    def closure(backward: bool = True) -> torch.Tensor:
        return ((torch.tanh(X @ w1.T + b1) @ w2.T - Y) ** 2).mean()

    return [w1, b1, w2], closure


def sgd(p: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(p, lr=0.05)


def adam(p: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(p, lr=1e-2)


CASES: dict[str, Callable[[list[torch.Tensor]], Any]] = {
    "MeZO_sgd": lambda p: MeZO(p, h=1e-3, seed=11, opt=sgd),
    "MeZO_gauss_fwd2_n2_adam": lambda p: MeZO(
        p, h=1e-3, n_samples=2, formula="forward2", distribution="gaussian", seed=5, opt=adam
    ),
    "SPSA_sgd": lambda p: SPSA(p, h=1e-3, seed=11, opt=sgd),
    "SPSA_central5_n3_adam": lambda p: SPSA(p, h=1e-2, n_samples=3, formula="central5", seed=2, opt=adam),
    "RDSA_sgd": lambda p: RDSA(p, h=1e-3, seed=3, opt=sgd),
    "GaussianSmoothing_sgd": lambda p: GaussianSmoothing(p, n_samples=5, seed=4, opt=sgd),
    "RandomizedFDM_sphere_sgd": lambda p: RandomizedFDM(p, h=1e-3, n_samples=2, distribution="sphere", seed=6, opt=sgd),
    "RandomizedFDM_uniform_fwd3_sgd": lambda p: RandomizedFDM(
        p, h=1e-3, formula="forward3", distribution="uniform", seed=8, opt=sgd
    ),
    "RandomGrad": lambda p: RandomGrad(p, lr=1e-2, seed=7),
    "RandomGrad_best2_rademacher_sgd": lambda p: RandomGrad(
        p, lr=1e-2, best_of=2, distribution="rademacher", seed=9, opt=sgd
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_old_directions_give_the_recorded_iterates(name: str) -> None:
    params, closure = problem()
    opt = CASES[name](params)
    opt.sampler = OldStream(opt.sampler.distribution)
    losses = [float(opt.step(closure)) for _ in range(FIXTURE["steps"])]
    expected = FIXTURE["cases"][name]
    assert losses == pytest.approx(expected["losses"], rel=1e-12, abs=1e-12)
    for p, want in zip(params, expected["params"]):
        got = p.detach().reshape(-1)
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12), name


def test_the_fixture_is_sensitive_to_the_directions() -> None:
    # with the new generator the iterates differ: the comparison above is not vacuous
    params, closure = problem()
    opt = CASES["SPSA_sgd"](params)
    for _ in range(FIXTURE["steps"]):
        opt.step(closure)
    want = torch.tensor(FIXTURE["cases"]["SPSA_sgd"]["params"][0], dtype=torch.float64)
    assert not torch.allclose(params[0].detach().reshape(-1), want, rtol=0, atol=1e-6)
