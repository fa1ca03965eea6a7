"""BatchNorm-like running statistics updated by trial evaluations: one RunningStatsWarning per module."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.errors import RunningStatsWarning


def model_and_closure(norm: torch.nn.Module) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), norm, torch.nn.Linear(4, 1))
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    def closure(backward: bool = True) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(model(x), y)
        if backward:
            model.zero_grad()
            loss.backward()
        return loss

    return model, closure


OPTIMIZERS: dict[str, Callable[[torch.nn.Module], Any]] = {
    "SPSA": lambda m: tzb.SPSA(m.parameters(), h=1e-2, seed=0, opt=lambda q: torch.optim.SGD(q, lr=1e-2)),
    "MeZO": lambda m: tzb.MeZO(m.parameters(), h=1e-2, seed=0),
    "RandomSearch": lambda m: tzb.RandomSearch(m.parameters(), n_samples=3, seed=0),
    "Nelder-Mead": lambda m: tzb.MinimizeWrapper(m.parameters(), method="Nelder-Mead", options={"maxfev": 30}),
    "BFGS": lambda m: tzb.MinimizeWrapper(m.parameters(), method="BFGS", options={"maxiter": 2}),
}


def caught(fn: Callable[[], Any]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fn()
    return [w for w in seen if issubclass(w.category, RunningStatsWarning)]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_mode_batchnorm_warns_once_and_the_statistics_did_change(name: str) -> None:
    model, closure = model_and_closure(torch.nn.BatchNorm1d(4))
    bn = model[1]
    opt = OPTIMIZERS[name](model)
    before = bn.running_mean.clone()
    first = caught(lambda: opt.step(closure))
    assert len(first) == 1
    assert "BatchNorm1d" in str(first[0].message) and "eval()" in str(first[0].message)
    assert first[0].filename == __file__  # attributed to the caller's line
    # the condition is real: the step's evaluations moved the running statistics
    assert not torch.equal(bn.running_mean, before)
    assert caught(lambda: opt.step(closure)) == []  # once
    assert caught(lambda: OPTIMIZERS[name](model).step(closure)) == []  # once per module, not per optimizer


@pytest.mark.parametrize(
    "norm",
    [
        torch.nn.BatchNorm1d(4).eval(),
        torch.nn.BatchNorm1d(4, track_running_stats=False),
        torch.nn.LayerNorm(4),
    ],
    ids=["eval", "untracked", "layernorm"],
)
def test_no_warning_without_running_statistics_updates(norm: torch.nn.Module) -> None:
    model, closure = model_and_closure(norm)
    buffers = [b.clone() for b in model.buffers()]
    opt = OPTIMIZERS["SPSA"](model)
    assert caught(lambda: opt.step(closure)) == []
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), buffers))


def test_instance_norm_with_tracked_statistics_warns() -> None:
    torch.manual_seed(0)
    norm = torch.nn.InstanceNorm1d(2, track_running_stats=True)
    x = torch.randn(4, 2, 5)
    w = torch.ones(1, requires_grad=True)
    opt = tzb.RandomSearch([w], n_samples=2, seed=0)
    seen = caught(lambda: opt.step(lambda backward=True: (norm(x * w) ** 2).mean()))
    assert len(seen) == 1 and "InstanceNorm1d" in str(seen[0].message)


def test_a_plain_torch_optimizer_step_is_not_watched() -> None:
    model, closure = model_and_closure(torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert caught(lambda: opt.step(closure)) == []
