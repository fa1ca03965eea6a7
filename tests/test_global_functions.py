"""The global test functions: torch modules agree with the numpy versions, autograd with the
analytic gradients, and the recorded minima are true (local) minima with the documented values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import check_grad, minimize

from torchzero_bridge.testing.global_functions import GLOBAL_FUNCTIONS, GlobalProblem

CASES = [(name, n) for name, spec in GLOBAL_FUNCTIONS.items() for n in (spec.dims or (2, 3, 5))]

# Published minima (Surjanovic & Bingham's virtual library of test functions).
PUBLISHED = {
    "rastrigin": lambda n: 0.0,
    "ackley": lambda n: 0.0,
    "styblinski_tang": lambda n: -39.16617 * n,
    "six_hump_camel": lambda n: -1.0316,
    "eggholder": lambda n: -959.6407,
    "levy": lambda n: 0.0,
}


def _random_points(name: str, n: int, count: int) -> np.ndarray:
    box = np.array(GLOBAL_FUNCTIONS[name].bounds(n))
    return np.random.default_rng(0).uniform(box[:, 0], box[:, 1], size=(count, n))


@pytest.mark.parametrize(("name", "n"), CASES)
def test_torch_module_matches_numpy_and_autograd_matches_analytic_gradient(name: str, n: int) -> None:
    spec = GLOBAL_FUNCTIONS[name]
    for x in _random_points(name, n, 20):
        model = spec.module.at(x)
        assert len(list(model.parameters())) == 2, "the vector is split over two tensors"
        loss = model()
        loss.backward()
        grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
        np.testing.assert_allclose(float(loss.detach()), spec.fun(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad, spec.grad(x), rtol=1e-9, atol=1e-9)
        # the analytic gradient is itself checked against finite differences
        assert check_grad(spec.fun, spec.grad, x) < 1e-4 * (1.0 + np.abs(spec.grad(x)).max())


@pytest.mark.parametrize(("name", "n"), CASES)
def test_numpy_versions_accept_a_batch_of_points(name: str, n: int) -> None:
    spec = GLOBAL_FUNCTIONS[name]
    X = _random_points(name, n, 7).T  # (n, S) as scipy's vectorized solvers pass it
    np.testing.assert_allclose(spec.fun(X), [spec.fun(X[:, i]) for i in range(7)], rtol=1e-13)
    np.testing.assert_allclose(spec.grad(X), np.stack([spec.grad(X[:, i]) for i in range(7)], axis=1), rtol=1e-13)


@pytest.mark.parametrize(("name", "n"), CASES)
def test_recorded_minima_are_stationary_with_the_published_value(name: str, n: int) -> None:
    spec = GLOBAL_FUNCTIONS[name]
    box = spec.bounds(n)
    assert spec.minimum(n) == pytest.approx(PUBLISHED[name](n), abs=1e-4 * max(1.0, n))
    for xstar in spec.argmins(n):
        assert spec.fun(xstar) == pytest.approx(spec.minimum(n), abs=1e-12, rel=1e-14)
        local = minimize(spec.fun, xstar, jac=spec.grad, method="L-BFGS-B", bounds=box, options={"ftol": 1e-15})
        assert local.fun >= spec.minimum(n) - 1e-9 * max(1.0, abs(spec.minimum(n)))
        np.testing.assert_allclose(local.x, xstar, atol=1e-6)
    # nothing sampled in the box is lower than the recorded minimum
    samples = _random_points(name, n, 20000).T
    assert spec.fun(samples).min() >= spec.minimum(n) - 1e-9


def test_dimension_checks_and_module_layout() -> None:
    with pytest.raises(ValueError, match="six_hump_camel is defined for n in"):
        GLOBAL_FUNCTIONS["six_hump_camel"].bounds(3)
    model = GLOBAL_FUNCTIONS["levy"].module.at([1.0, 2.0, 3.0, 4.0, 5.0])
    assert [tuple(p.shape) for p in model.parameters()] == [(2,), (3,)]
    assert isinstance(model, GlobalProblem)
    assert model.vector().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match="at least one"):
        GlobalProblem()
