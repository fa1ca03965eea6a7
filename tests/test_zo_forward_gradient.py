"""ForwardGradient equals d * (grad . d) with grad from autograd, for every closure kind."""

from __future__ import annotations

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.zeroth_order import DISTRIBUTIONS, ForwardGradient
from torchzero_bridge.zeroth_order.directions import DirectionSampler

torch.manual_seed(0)
X = torch.randn(32, 3, dtype=torch.float64)
Y = torch.randn(32, 1, dtype=torch.float64)


def make_model() -> torch.nn.Module:
    torch.manual_seed(2)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()


def loss_fn(m: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((m(X) - y) ** 2).mean()


def autograd_grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss_fn(model, X, Y), list(model.parameters())))


def backward_closure(model: torch.nn.Module, calls: dict):
    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] = calls.get("n", 0) + 1
        loss = loss_fn(model, X, Y)
        if backward:
            calls["backward"] = calls.get("backward", 0) + 1
            model.zero_grad()
            loss.backward()
        return loss

    return closure


class GngdbClosure:
    """A closure object with .model and a static .loss(model) (pytorch-minimize style)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    @staticmethod
    def loss(model: torch.nn.Module) -> torch.Tensor:
        return loss_fn(model, X, Y)

    def __call__(self) -> torch.Tensor:
        self.model.zero_grad()
        loss = self.loss(self.model)
        loss.backward()
        return loss


@pytest.mark.parametrize("kind", ["backward-aware", "BatchObjective", "gngdb object"])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_equals_direction_times_directional_derivative(kind: str, distribution: str) -> None:
    model = make_model()
    params = list(model.parameters())
    grads = autograd_grads(model)
    calls: dict = {}
    closure = {
        "backward-aware": lambda: backward_closure(model, calls),
        "BatchObjective": lambda: tzb.BatchObjective(model, loss_fn, X, Y),
        "gngdb object": lambda: GngdbClosure(model),
    }[kind]()
    est = ForwardGradient(params, distribution=distribution, seed=0)
    est._draw_seed = lambda: 12345  # pin the sample seed so the direction can be rebuilt independently
    before = [p.detach().clone() for p in params]
    loss = est.step(closure)

    d = DirectionSampler(distribution).sample(12345, params)
    dd = sum(float((g * di).sum()) for g, di in zip(grads, d))  # grad . d by autograd
    for p, di in zip(params, d):
        assert torch.allclose(p.grad, di * dd, rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(float(loss_fn(model, X, Y).detach()), rel=1e-14)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert est.nfev == 1 and calls.get("backward", 0) == 0


def test_rademacher_without_knowing_the_seed() -> None:
    # entries of a Rademacher forward gradient all have magnitude |grad . d|, so d = ±sign(estimate)
    # and d * (grad . d) is the same for both signs: checkable with autograd alone
    w = torch.tensor([0.3, -1.2, 2.0, 0.7], dtype=torch.float64, requires_grad=True)
    f = lambda x: (torch.sin(x) * x**2).sum() + x.prod()  # noqa: E731
    (g,) = torch.autograd.grad(f(w), w)
    ForwardGradient([w], distribution="rademacher", seed=3).step(lambda backward=True: f(w))
    d = torch.sign(w.grad)
    assert torch.allclose(w.grad, d * (g @ d), rtol=1e-12)


def test_several_samples_average() -> None:
    model = make_model()
    params = list(model.parameters())
    grads = autograd_grads(model)
    est = ForwardGradient(params, n_samples=3, distribution="gaussian", seed=0)
    seeds = iter([11, 22, 33])
    est._draw_seed = lambda: next(seeds)
    est.step(tzb.BatchObjective(model, loss_fn, X, Y))
    expected = [torch.zeros_like(p) for p in params]
    for s in (11, 22, 33):
        d = DirectionSampler("gaussian").sample(s, params)
        dd = sum(float((g * di).sum()) for g, di in zip(grads, d))
        for e, di in zip(expected, d):
            e += di * dd / 3
    for p, e in zip(params, expected):
        assert torch.allclose(p.grad, e, rtol=1e-10, atol=1e-12)
    assert est.nfev == 3


def test_complex_parameter() -> None:
    z = torch.tensor([1 + 2j, -0.5j], dtype=torch.complex128, requires_grad=True)
    f = lambda: (z.abs() ** 2).sum() + z.real.prod()  # noqa: E731
    (g,) = torch.autograd.grad(f(), z)
    est = ForwardGradient([z], distribution="gaussian", seed=0)
    est._draw_seed = lambda: 5
    est.step(lambda backward=True: f())
    d = DirectionSampler("gaussian").sample(5, [torch.view_as_real(z)])[0]
    dd = float((torch.view_as_real(g) * d).sum())
    assert torch.allclose(torch.view_as_real(z.grad), d * dd, rtol=1e-12)


def test_trains_with_inner_optimizer() -> None:
    model = make_model()
    batch = tzb.BatchObjective(model, loss_fn, X, Y)
    start = float(batch())
    opt = ForwardGradient(model.parameters(), n_samples=4, seed=0, opt=lambda p: torch.optim.Adam(p, lr=1e-2))
    for _ in range(150):
        opt.step(batch)
    assert float(batch()) < 0.8 * start


def test_errors() -> None:
    w = torch.zeros(2, requires_grad=True)

    def plain() -> torch.Tensor:
        loss = (w**2).sum()
        loss.backward()
        return loss

    with pytest.raises(TypeError, match="can skip its backward pass"):
        ForwardGradient([w]).step(plain)
    with pytest.raises(tzb.ClosureError, match="tensor loss"):
        ForwardGradient([w]).step(lambda backward=True: 1.0)
    with pytest.raises(ValueError, match="distribution expected one of"):
        ForwardGradient(distribution="cauchy")
    with pytest.raises(TypeError, match="cannot be MinimizeWrapper's jac"):
        opt = tzb.MinimizeWrapper([w], method="BFGS", jac=ForwardGradient())
        opt.step(lambda backward=True: (w**2).sum())
