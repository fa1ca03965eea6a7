"""Frozen ``nn.Parameter`` s (``requires_grad=False``) are left untouched by every optimizer.

That every registered optimizer leaves a frozen tensor untouched (and moves the others) is the
contract suite's ``test_frozen_parameter_untouched`` (tests/test_contract_suite.py). Here: the
warning that says so points at the user's line for every registry entry, and the special cases
(plain tensors, groups added later, an inner optimizer that lists the frozen tensor).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.errors import FrozenParameterWarning
from torchzero_bridge.testing.registry import ENTRIES, Entry

B = (-2.0, 2.0)
SGD = (torch.optim.SGD, {"lr": 0.05})
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


@pytest.mark.parametrize("e", ENTRIES, ids=[e.name for e in ENTRIES])
def test_frozen_warning_is_said_once_at_the_callers_line(e: Entry) -> None:
    model = e.problem()
    frozen = list(model.parameters())[-1]
    frozen.requires_grad_(False)
    with pytest.warns(FrozenParameterWarning, match=r"param group 0 holds 1 frozen nn\.Parameter") as caught:
        opt = e.factory(model.parameters())
    said = [w for w in caught if w.category is FrozenParameterWarning]
    assert len(said) == 1  # said once
    assert said[0].filename == __file__  # attributed to the user's line (the registry's factories are package code)
    assert all(p is not frozen for g in opt.param_groups for p in g["params"])


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
