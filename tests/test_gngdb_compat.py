"""gngdb's pytorch-minimize closure objects behave as in gngdb.

gngdb's ``MinimizeWrapper.step`` calls ``closure()`` for every value and gradient, and uses
``closure.loss(model)`` only to build a dense Hessian for the Newton-type methods. Its own tests
read ``closure._loss``, which only ``__call__`` records. Here: the same recipe through an import
shim (``pytorch_minimize.optim`` mapped to this package), every value and gradient from
``__call__`` (one call per distinct point), ``.loss`` only for Hessians, and the iterates of a
scipy run that uses gngdb's own derivatives (values and gradients from the closure, the exact
dense Hessian from ``torch.autograd.functional.hessian`` of ``.loss``).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import scipy.optimize as so
import torch
import torch.nn.functional as F
from torch.autograd.functional import hessian

import torchzero_bridge as tzb

HESS_METHODS = ["Newton-CG", "trust-ncg", "trust-krylov", "trust-exact", "dogleg", "trust-constr"]


def _data(n: int = 40, d: int = 4, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, dtype=torch.float64, generator=g)
    y = (X @ torch.randn(d, k, dtype=torch.float64, generator=g)).argmax(1)
    return X, y


X, Y = _data()


class Recorder:
    """A gngdb-style closure object that records what each of its entry points is asked."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.points: list[np.ndarray] = []  # parameters at each __call__
        self.loss_calls = 0  # .loss calls from outside __call__ (Hessian graphs)
        self._inside = False

    @staticmethod
    def raw_loss(model: torch.nn.Module) -> torch.Tensor:
        return F.cross_entropy(model(X), Y) + 1e-2 * sum((p**2).sum() for p in model.parameters())

    def loss(self, model: torch.nn.Module) -> torch.Tensor:
        if not self._inside:
            self.loss_calls += 1
        return self.raw_loss(model)

    def __call__(self) -> torch.Tensor:
        self._inside = True
        try:
            if self.optimizer is not None:
                self.optimizer.zero_grad()
            self.points.append(torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).numpy().copy())
            loss = self.loss(self.model)
            loss.backward()
            self._loss = loss.item()
            return loss
        finally:
            self._inside = False


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3).double()


def _gngdb_reference(method: str, model: torch.nn.Module) -> so.OptimizeResult:
    """scipy with gngdb's derivatives: f and g from a backward pass, the dense Hessian of .loss."""
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def unflatten(v: torch.Tensor) -> list[torch.Tensor]:
        return [c.reshape(s) for c, s in zip(torch.split(v, sizes), shapes)]

    def f_of(v: torch.Tensor) -> torch.Tensor:
        W, b = unflatten(v)
        return F.cross_entropy(X @ W.T + b, Y) + 1e-2 * ((W**2).sum() + (b**2).sum())

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        v = torch.tensor(x, requires_grad=True)
        loss = f_of(v)
        (g,) = torch.autograd.grad(loss, v)
        return float(loss.detach()), g.numpy()

    def hess(x: np.ndarray) -> np.ndarray:
        return hessian(f_of, torch.tensor(x)).numpy()

    x0 = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
    return so.minimize(fun, x0, jac=True, hess=hess, method=method, options={"maxiter": 200})


@pytest.fixture
def shim(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``pytorch_minimize.optim`` mapped to this package, as a user's import shim would."""
    package = types.ModuleType("pytorch_minimize")
    optim = types.ModuleType("pytorch_minimize.optim")
    for name in ("MinimizeWrapper", "BasinHoppingWrapper", "DifferentialEvolutionWrapper", "DualAnnealingWrapper"):
        setattr(optim, name, getattr(tzb, name))
    optim.SHGOWrapper = tzb.SHGOWrapper
    package.optim = optim  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pytorch_minimize", package)
    monkeypatch.setitem(sys.modules, "pytorch_minimize.optim", optim)
    return optim


@pytest.mark.parametrize("method", HESS_METHODS)
def test_hessian_methods_call_the_object_for_values_and_gradients(shim: types.ModuleType, method: str) -> None:
    from pytorch_minimize.optim import MinimizeWrapper  # type: ignore[import-not-found]

    model = _model()
    ref = _gngdb_reference(method, _model())
    optimizer = MinimizeWrapper(model.parameters(), {"method": method, "options": {"maxiter": 200}})
    closure = Recorder(model, optimizer)
    optimizer.step(closure)
    res = optimizer.res
    # what gngdb's own tests read: the loss __call__ recorded, at the last point it evaluated
    assert closure._loss == pytest.approx(Recorder.raw_loss(model).item(), rel=1e-6)
    # every value and gradient came from __call__, once per distinct point
    distinct = {p.tobytes() for p in closure.points}
    assert len(closure.points) == res.nfev == len(distinct)
    # .loss built the exact Hessian graphs, at some of those points only
    assert 0 < closure.loss_calls <= len(distinct) and res.nhev > 0
    # the iterates of scipy with gngdb's derivatives
    assert res.nit == ref.nit
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-8)
    assert res.fun == pytest.approx(ref.fun, rel=1e-10)


def test_basinhopping_hessian_recipe_records_loss(shim: types.ModuleType) -> None:
    from pytorch_minimize.optim import BasinHoppingWrapper  # type: ignore[import-not-found]

    model = _model()
    optimizer = BasinHoppingWrapper(model.parameters(), {"method": "trust-ncg"}, {"niter": 2, "rng": 0})
    closure = Recorder(model, optimizer)
    start = Recorder.raw_loss(model).item()
    optimizer.step(closure)
    assert closure._loss < 0.7 * start
    assert len(closure.points) == optimizer.res.nfev
    assert 0 < closure.loss_calls <= optimizer.res.nfev


def test_derivative_free_methods_also_call_the_object(shim: types.ModuleType) -> None:
    from pytorch_minimize.optim import MinimizeWrapper  # type: ignore[import-not-found]

    model = _model()
    optimizer = MinimizeWrapper(model.parameters(), {"method": "Nelder-Mead", "jac": False, "options": {"maxiter": 50}})
    closure = Recorder(model, optimizer)
    optimizer.step(closure)
    assert len(closure.points) == optimizer.res.nfev > 0
    assert closure.loss_calls == 0, "no Hessian: .loss is never called on its own"


def test_object_accepting_backward_skips_it_for_values() -> None:
    model = _model()
    runs: list[bool] = []

    class Closure:
        def __init__(self, model: torch.nn.Module) -> None:
            self.model = model

        @staticmethod
        def loss(model: torch.nn.Module) -> torch.Tensor:
            return Recorder.raw_loss(model)

        def __call__(self, backward: bool = True) -> torch.Tensor:
            runs.append(backward)
            model.zero_grad()
            loss = self.loss(self.model)
            if backward:
                loss.backward()
            return loss

    opt = tzb.MinimizeWrapper(model.parameters(), method="Powell", options={"maxiter": 2})
    opt.step(Closure(model))
    assert runs and not any(runs)


def test_gngdb_helpers_round_trip() -> None:
    torch.manual_seed(0)
    params = [torch.randn(10), torch.randn(9, dtype=torch.float64), torch.randn(2, 4)]
    opt = tzb.MinimizeWrapper(params, {"method": "CG"})
    flat = opt.ravel_pack(params)
    assert flat.dtype == np.float64 and flat.shape == (10 + 9 + 8,)
    back = opt.np_unravel_unpack(flat)
    for p, q in zip(params, back):
        assert q.dtype == p.dtype and q.shape == p.shape and torch.equal(p, q)
