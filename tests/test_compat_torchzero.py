"""torchzero's README recipes run unchanged: constructed inner optimizers, third-party classes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import optim

from torchzero_bridge.errors import IgnoredOptionWarning
from torchzero_bridge.zeroth_order import FDM, SPSA, GradChain, MeZO, RandomGrad


class Lion(torch.optim.Optimizer):
    """A Lion-style optimizer written here, standing in for a third-party class."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m * b1 + p.grad * (1 - b1)), alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)
        return loss


def _data(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    X = torch.randn(64, 4)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return model, X, y


def test_readme_random_grad_with_constructed_adamw_trains() -> None:
    model, X, y = _data()
    optimizer = RandomGrad(model.parameters(), lr=1e-5, opt=optim.AdamW(model.parameters(), lr=1e-3))

    def closure(backward: bool = True) -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(X), y)

    start = float(closure().detach())
    for _ in range(1000):
        optimizer.step(closure)
    assert isinstance(optimizer.opt, optim.AdamW)
    assert float(closure().detach()) < 0.7 * start


def test_readme_grad_chain_with_constructed_sgd_and_lion_trains() -> None:
    model, X, y = _data(1)
    optimizer = GradChain(
        model.parameters(),
        [
            torch.optim.SGD(model.parameters(), lr=1, momentum=0.9, nesterov=True),
            Lion(model.parameters(), lr=1e-2),
        ],
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        return loss

    start = float(closure().detach())
    for _ in range(100):
        optimizer.step(closure)
    assert float(closure().detach()) < 0.2 * start


def test_grad_chain_with_lion_equals_lion_on_nesterov_by_hand() -> None:
    w0 = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    w = w0.clone().requires_grad_(True)
    chain = GradChain([w], [optim.SGD([w], lr=1, momentum=0.8, nesterov=True), Lion([w], lr=0.01)])

    def closure() -> torch.Tensor:
        chain.zero_grad()
        loss = (w**4).sum()
        loss.backward()
        return loss

    x, buf, m = w0.clone(), None, torch.zeros(3, dtype=torch.float64)
    for _ in range(20):
        chain.step(closure)
        g = 4 * x**3
        buf = g.clone() if buf is None else 0.8 * buf + g
        d = g + 0.8 * buf
        x = x - 0.01 * torch.sign(0.9 * m + 0.1 * d)
        m = 0.99 * m + 0.01 * d
    torch.testing.assert_close(w.detach(), x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("make", [SPSA, FDM, MeZO], ids=["SPSA", "FDM", "MeZO"])
def test_every_estimator_takes_a_constructed_opt_and_checkpoints_it(make) -> None:
    def build(w: torch.Tensor):
        return make([w], opt=optim.Adam([w], lr=0.05), **({"seed": 3} if make is not FDM else {}))

    def run(opt, w: torch.Tensor, steps: int) -> None:
        for _ in range(steps):
            opt.step(lambda backward=True: ((w - 2) ** 2).sum())

    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    est = build(w)
    run(est, w, 5)
    saved, saved_w = copy.deepcopy(est.state_dict()), w.detach().clone()
    assert saved["torchzero_bridge"]["state"]["opt"]["state"][0]["step"] == 5
    run(est, w, 5)
    w2 = saved_w.clone().requires_grad_(True)
    est2 = build(w2)
    est2.load_state_dict(saved)
    run(est2, w2, 5)
    assert torch.equal(w2.detach(), w.detach())


def test_random_grad_checkpoint_carries_the_constructed_opt() -> None:
    def build(w: torch.Tensor) -> RandomGrad:
        return RandomGrad([w], lr=1e-2, seed=0, opt=optim.AdamW([w], lr=1e-2))

    def run(opt: RandomGrad, w: torch.Tensor) -> None:
        for _ in range(4):
            opt.step(lambda backward=True: ((w - 1) ** 2).sum())

    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    rg = build(w)
    run(rg, w)
    saved, saved_w = copy.deepcopy(rg.state_dict()), w.detach().clone()
    run(rg, w)
    w2 = saved_w.clone().requires_grad_(True)
    rg2 = build(w2)
    rg2.load_state_dict(saved)
    run(rg2, w2)
    assert torch.equal(w2.detach(), w.detach())


def test_mismatched_constructed_opt_names_the_tensors_by_module_name() -> None:
    model = torch.nn.Linear(2, 1)
    named = optim.SGD(list(model.named_parameters())[:1], lr=0.1)  # only 'weight'
    with pytest.raises(ValueError, match=r"missing from SGD: RandomGrad\.param_groups\[0\]\[1\] \(shape \(1,\)\)"):
        RandomGrad(model.parameters(), opt=named)
    with pytest.raises(ValueError, match=r"not SPSA's: SGD\.param_groups\[0\]\[0\] 'weight' \(shape \(1, 2\)\)"):
        SPSA([model.bias], opt=named)


def test_group_options_meant_for_a_constructed_opt_warn() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.warns(
        IgnoredOptionWarning, match=r"\['weight_decay'\] is ignored: SPSA's opt \(AdamW\) was constructed"
    ):
        SPSA([{"params": [w], "weight_decay": 0.1}], opt=optim.AdamW([w]))


def test_lbfgs_first_stage_of_a_chain_works() -> None:
    w = torch.tensor([3.0, -1.0], dtype=torch.float64, requires_grad=True)
    chain = GradChain([w], [optim.LBFGS([w], max_iter=5)])

    def closure() -> torch.Tensor:
        chain.zero_grad()
        loss = ((w - 1) ** 2).sum()
        loss.backward()
        return loss

    chain.step(closure)
    assert math.isclose(float(((w.detach() - 1) ** 2).sum()), 0.0, abs_tol=1e-12)
