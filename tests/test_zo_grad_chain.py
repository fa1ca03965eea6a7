"""GradChain: Adam on Nesterov-momentum gradients, estimator first stages, state, errors."""

from __future__ import annotations

import pytest
import torch

from torchzero_bridge.zeroth_order import SPSA, GradChain, RandomGrad

X0 = torch.tensor([-1.1, 2.5, 0.4, -0.3, 1.7, 0.9], dtype=torch.float64)


def rosen(x: torch.Tensor) -> torch.Tensor:
    return torch.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def grad_closure(w: torch.Tensor, opt: torch.optim.Optimizer):
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = rosen(w)
        loss.backward()
        return loss

    return closure


def hand_adam_on_nesterov(steps: int, mu: float, lr: float) -> torch.Tensor:
    """Written out from the update rules, no torch optimizer involved."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    x = X0.clone()
    buf = m = v = None
    for t in range(1, steps + 1):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(rosen(xr), xr)
        buf = g.clone() if buf is None else mu * buf + g
        ng = g + mu * buf  # Nesterov
        m = (1 - b1) * ng if m is None else b1 * m + (1 - b1) * ng
        v = (1 - b2) * ng**2 if v is None else b2 * v + (1 - b2) * ng**2
        mhat = m / (1 - b1**t)
        vhat = v / (1 - b2**t)
        x = x - lr * mhat / (vhat.sqrt() + eps)
    return x


@pytest.mark.parametrize(
    "stages",
    [
        [lambda p: torch.optim.SGD(p, lr=1, momentum=0.9, nesterov=True), lambda p: torch.optim.Adam(p, lr=1e-2)],
        [(torch.optim.SGD, {"lr": 1, "momentum": 0.9, "nesterov": True}), (torch.optim.Adam, {"lr": 1e-2})],
    ],
    ids=["factories", "class-kwargs pairs"],
)
def test_adam_on_nesterov_identity_over_50_steps(stages) -> None:
    w = X0.clone().requires_grad_(True)
    chain = GradChain([w], stages)
    for _ in range(50):
        chain.step(grad_closure(w, chain))
    expected = hand_adam_on_nesterov(50, 0.9, 1e-2)
    assert float((w.detach() - expected).abs().max()) < 1e-6
    # and it is not just Adam on the plain gradient
    plain = X0.clone().requires_grad_(True)
    adam = torch.optim.Adam([plain], lr=1e-2)
    for _ in range(50):
        adam.step(grad_closure(plain, adam))
    assert float((plain.detach() - expected).abs().max()) > 1e-3


def test_single_stage_is_that_optimizer() -> None:
    a = X0.clone().requires_grad_(True)
    b = X0.clone().requires_grad_(True)
    chain = GradChain([a], [lambda p: torch.optim.Adam(p, lr=1e-2)])
    adam = torch.optim.Adam([b], lr=1e-2)
    for _ in range(10):
        chain.step(grad_closure(a, chain))
        adam.step(grad_closure(b, adam))
    assert torch.equal(a, b)


def test_estimator_first_stage_is_zeroth_order_and_equals_opt_form() -> None:
    a = X0.clone().requires_grad_(True)
    b = X0.clone().requires_grad_(True)
    calls = {"n": 0, "backward": 0}

    def closure_for(w):
        def closure(backward: bool = True) -> torch.Tensor:
            calls["n"] += 1
            loss = rosen(w)
            if backward:
                calls["backward"] += 1
                loss.backward()
            return loss

        return closure

    chain = GradChain([a], [SPSA(h=1e-3, seed=0), (torch.optim.Adam, {"lr": 1e-2})])
    direct = SPSA([b], h=1e-3, seed=0, opt=lambda p: torch.optim.Adam(p, lr=1e-2))
    for _ in range(20):
        la = chain.step(closure_for(a))
        lb = direct.step(closure_for(b))
        assert la.item() == lb.item()
    assert torch.equal(a, b)
    assert calls == {"n": 80, "backward": 0}


def test_estimator_with_momentum_stage() -> None:
    w = X0[:2].clone().requires_grad_(True)
    chain = GradChain(
        [w],
        [
            SPSA(h=1e-3, n_samples=2, seed=0),
            lambda p: torch.optim.SGD(p, lr=1, momentum=0.9),
            (torch.optim.Adam, {"lr": 2e-2}),
        ],
    )
    start = float(rosen(w.detach()))
    for _ in range(300):
        loss = chain.step(lambda backward=True: rosen(w))
    assert loss.item() < 0.1 * start


def test_random_grad_first_stage_hands_its_update() -> None:
    a = X0[:2].clone().requires_grad_(True)
    b = X0[:2].clone().requires_grad_(True)
    chain = GradChain([a], [lambda p: RandomGrad(p, lr=1e-2, seed=1), lambda p: torch.optim.SGD(p, lr=1.0)])
    solo = RandomGrad([b], lr=1e-2, seed=1)
    for _ in range(30):
        chain.step(lambda backward=True: rosen(a))
        solo.step(lambda backward=True: rosen(b))
    assert torch.allclose(a, b, atol=1e-12)


def test_state_dict_round_trip() -> None:
    def make(w):
        return GradChain(
            [w],
            [SPSA(h=1e-3, seed=2), lambda p: torch.optim.SGD(p, lr=1, momentum=0.9), (torch.optim.Adam, {"lr": 1e-2})],
        )

    w = X0.clone().requires_grad_(True)
    chain = make(w)
    for _ in range(5):
        chain.step(lambda backward=True: rosen(w))
    saved_w, saved = w.detach().clone(), chain.state_dict()
    for _ in range(5):
        chain.step(lambda backward=True: rosen(w))
    w2 = saved_w.clone().requires_grad_(True)
    chain2 = make(w2)
    chain2.load_state_dict(saved)
    for _ in range(5):
        chain2.step(lambda backward=True: rosen(w2))
    assert torch.equal(w2.detach(), w.detach())


def test_group_options_reach_every_stage() -> None:
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    chain = GradChain([{"params": [a], "lr": 0.5}, {"params": [b]}], [(torch.optim.SGD, {"lr": 1.0})])
    assert [g["lr"] for g in chain.stages[0].param_groups] == [0.5, 1.0]


def test_grad_none_params_are_skipped() -> None:
    a = torch.ones(2, requires_grad=True)
    unused = torch.ones(2, requires_grad=True)
    chain = GradChain([a, unused], [lambda p: torch.optim.SGD(p, lr=1, momentum=0.5), (torch.optim.SGD, {"lr": 0.1})])

    def closure() -> torch.Tensor:
        chain.zero_grad()
        loss = (a**2).sum()
        loss.backward()
        return loss

    chain.step(closure)
    assert unused.grad is None and torch.equal(unused, torch.ones(2))
    assert torch.allclose(a.detach(), torch.full((2,), 0.8))


def test_errors() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="optimizers is empty"):
        GradChain([w], [])
    with pytest.raises(ValueError, match=r"optimizers\[1\] \(SPSA\) evaluates the closure itself"):
        GradChain([w], [(torch.optim.SGD, {"lr": 1.0}), SPSA()])
    with pytest.raises(TypeError, match="already-constructed Adam"):
        GradChain([w], [torch.optim.Adam([w])])
    with pytest.raises(TypeError, match=r"\(class, kwargs dict\) pair"):
        GradChain([w], [(torch.optim.Adam, 0.1)])
    with pytest.raises(TypeError, match=r"must build a torch\.optim\.Optimizer"):
        GradChain([w], [lambda p: None])
    with pytest.raises(ValueError, match="over other tensors"):
        GradChain([w], [lambda p: torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)])
    with pytest.raises(TypeError, match="expected a list of stages"):
        GradChain([w], "adam")  # type: ignore[arg-type]
    bound = SPSA([w])
    with pytest.raises(TypeError, match="already-constructed SPSA"):
        GradChain([w], [bound])
