"""Hessian-vector products and dense Hessians against torch.autograd.functional."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian, hvp

import torchzero_bridge as tzb

SHAPES = [(3, 4), (4,), (4, 2), (2,)]


def _loss_from(parts: list[torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    W1, b1, W2, b2 = parts
    out = torch.tanh(X @ W1 + b1) @ W2 + b2
    return ((out - y) ** 2).mean() + 0.01 * sum((p**2).sum() for p in parts)


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, dtype=torch.float64, generator=g, requires_grad=True) for s in SHAPES]
    X = torch.randn(20, 3, dtype=torch.float64, generator=g)
    y = torch.randn(20, 2, dtype=torch.float64, generator=g)

    def closure(backward: bool = True) -> torch.Tensor:
        for p in params:
            p.grad = None
        loss = _loss_from(params, X, y)
        if backward:
            loss.backward()
        return loss

    def plain_closure() -> torch.Tensor:
        return closure(True)

    sizes = [int(np.prod(s)) for s in SHAPES]

    def f_flat(v: torch.Tensor) -> torch.Tensor:
        parts = [c.reshape(s) for c, s in zip(torch.split(v, sizes), SHAPES)]
        return _loss_from(parts, X, y)

    return params, closure, plain_closure, f_flat, (X, y)


TOL = {"autograd": 1e-12, "forward": 1e-5, "central": 1e-8}


@pytest.mark.parametrize("method", ["autograd", "forward", "central"])
def test_hvp_matches_autograd_functional(problem, method: str) -> None:
    params, closure, plain, f_flat, _ = problem
    flat = tzb.FlatParams(params)
    # the exact method needs a backward-aware closure; finite differences work with a plain one
    obj = tzb.Objective(flat, closure if method == "autograd" else plain, hvp_method=method, uses_hessian=True)
    rng = np.random.default_rng(1)
    x = flat.read() + 0.1 * rng.normal(size=flat.n)
    for _ in range(3):
        v = rng.normal(size=flat.n)
        ours = obj.hessp(x, v)
        _, ref = hvp(f_flat, torch.tensor(x), torch.tensor(v))
        np.testing.assert_allclose(ours, ref.numpy(), rtol=TOL[method], atol=TOL[method])


@pytest.mark.parametrize("method", ["autograd", "forward", "central"])
def test_dense_hessian_matches_autograd_functional(problem, method: str) -> None:
    params, closure, plain, f_flat, _ = problem
    flat = tzb.FlatParams(params)
    obj = tzb.Objective(flat, closure if method == "autograd" else plain, hvp_method=method, uses_hessian=True)
    x = flat.read()
    H = obj.hess(x)
    ref = hessian(f_flat, torch.tensor(x)).numpy()
    np.testing.assert_allclose(H, ref, rtol=TOL[method], atol=TOL[method])
    np.testing.assert_array_equal(H, H.T)


def test_autograd_products_reuse_one_graph(problem) -> None:
    """One closure run per point: the value, the gradient and many products share it."""
    params, closure, _, _, _ = problem
    runs = {"n": 0}

    def counted(backward: bool = True) -> torch.Tensor:
        runs["n"] += 1
        return closure(backward)

    flat = tzb.FlatParams(params)
    obj = tzb.Objective(flat, counted, uses_hessian=True)
    x = flat.read()
    obj.fun(x)
    obj.grad(x)
    for k in range(5):
        obj.hessp(x, np.eye(flat.n)[k])
    obj.hess(x)
    assert runs["n"] == 1
    assert (obj.nfev, obj.ngev, obj.nhev) == (1, 1, 6)


def test_gngdb_closure_object_gets_exact_hessian(problem) -> None:
    params, _, _, f_flat, (X, y) = problem

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ps = torch.nn.ParameterList([torch.nn.Parameter(p.detach().clone()) for p in params])

    model = Model()

    class Closure:
        def __init__(self, model: torch.nn.Module) -> None:
            self.model = model

        @staticmethod
        def loss(model: torch.nn.Module) -> torch.Tensor:
            return _loss_from(list(model.ps), X, y)

        def __call__(self) -> torch.Tensor:
            for p in self.model.parameters():
                p.grad = None
            loss = self.loss(self.model)
            loss.backward()
            return loss

    flat = tzb.FlatParams(model.parameters())
    obj = tzb.Objective(flat, Closure(model), uses_hessian=True)
    assert obj.hvp_method == "autograd"
    x = flat.read()
    np.testing.assert_allclose(obj.hess(x), hessian(f_flat, torch.tensor(x)).numpy(), rtol=1e-12, atol=1e-12)


def test_plain_closure_falls_back_to_central_with_warning(problem) -> None:
    params, _, plain, _, _ = problem
    with pytest.warns(UserWarning, match="hvp_method='central'"):
        obj = tzb.Objective(tzb.FlatParams(params), plain, uses_hessian=True)
    assert obj.hvp_method == "central"


def test_newton_methods_use_exact_products_end_to_end(problem) -> None:
    """Newton-CG on the MLP converges to a point where the autograd gradient vanishes."""
    params, closure, _, f_flat, _ = problem
    opt = tzb.MinimizeWrapper(params, method="Newton-CG", options={"xtol": 1e-10})
    opt.step(closure)
    x = torch.tensor(opt.result.x, requires_grad=True)
    (g,) = torch.autograd.grad(f_flat(x), x)
    assert opt.result.success
    assert float(g.abs().max()) < 1e-6
    assert opt.result.nhev > 0


def test_complex_parameters_hvp_in_real_pairs() -> None:
    z = torch.tensor([1.0 + 2.0j, -0.5 + 0.3j], dtype=torch.complex128, requires_grad=True)

    def closure(backward: bool = True) -> torch.Tensor:
        z.grad = None
        loss = (torch.abs(z) ** 4).sum() + (z.real * z.imag).sum()
        if backward:
            loss.backward()
        return loss

    def f_real(v: torch.Tensor) -> torch.Tensor:
        c = torch.view_as_complex(v.reshape(2, 2))
        return (torch.abs(c) ** 4).sum() + (c.real * c.imag).sum()

    flat = tzb.FlatParams([z])
    obj = tzb.Objective(flat, closure, uses_hessian=True)
    x = flat.read()
    np.testing.assert_allclose(obj.grad(x), torch.func.grad(f_real)(torch.tensor(x)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(obj.hess(x), hessian(f_real, torch.tensor(x)).numpy(), rtol=1e-12, atol=1e-12)


def test_graph_at_a_remembered_point_survives_evaluations_elsewhere(problem) -> None:
    """Trust-region pattern: products at x, a trial point y, then products at x again (no rerun)."""
    params, closure, _, f_flat, _ = problem
    runs = {"n": 0}

    def counted(backward: bool = True) -> torch.Tensor:
        runs["n"] += 1
        return closure(backward)

    flat = tzb.FlatParams(params)
    obj = tzb.Objective(flat, counted, uses_hessian=True)
    x = flat.read()
    y = x + 0.05
    v = np.linspace(-1.0, 1.0, flat.n)
    first = obj.hessp(x, v)
    obj.fun(y)
    again = obj.hessp(x, v)
    at_y = obj.hessp(y, v)
    assert runs["n"] == 2
    np.testing.assert_array_equal(first, again)
    _, ref = hvp(f_flat, torch.tensor(y), torch.tensor(v))
    np.testing.assert_allclose(at_y, ref.numpy(), rtol=1e-12, atol=1e-12)
