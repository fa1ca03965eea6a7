"""BatchObjective.evaluate against the model evaluated one point at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb

CHUNKS: list[Any] = [None, 1, 5, 64, "auto"]


def one_at_a_time(flat: tzb.FlatParams, model: torch.nn.Module, loss: Callable[..., Any], inputs: tuple, P: Any) -> Any:
    """Reference losses: write each row into the model and call the loss."""
    start = flat.read()
    out = []
    for row in P:
        flat.write(row)
        with torch.no_grad():
            out.append(float(loss(model, *inputs)))
    flat.write(start)
    return np.array(out)


class Tied(torch.nn.Module):
    """The same weight in two modules."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(2, 2, bias=False)
        self.b = torch.nn.Linear(2, 2, bias=False)
        self.b.weight = self.a.weight

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(X)))


class Shared(torch.nn.Module):
    """One submodule reachable under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(2, 2)
        self.b = self.a
        self.c = torch.nn.Linear(2, 1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(torch.tanh(self.a(X))))


class IntegerKnobs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3))
        self.register_buffer("k", torch.tensor([1, 2, 3]))
        self.register_buffer("on", torch.tensor([True, False]))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return (X @ (self.w * self.k)) + self.on.sum() * 0.5


def cases() -> dict[str, Any]:
    """name -> (model, tensors to optimize, loss(model, *inputs), inputs)."""
    torch.manual_seed(0)
    mse = lambda m, X, y: torch.mean((m(X) - y) ** 2)  # noqa: E731
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    X, y = torch.randn(20, 4), torch.randn(20, 1)
    mixed = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).double()
    mixed[0].float()
    X3 = torch.randn(10, 3)
    tied, shared, knobs = Tied(), Shared(), IntegerKnobs()
    X2 = torch.randn(7, 2)
    square = lambda m, X: m(X).pow(2).mean()  # noqa: E731
    to_double = lambda m, X: m[2](m[1](m[0](X)).double()).sum()  # noqa: E731
    return {
        "mlp": (mlp, list(mlp.parameters()), mse, (X, y)),
        "some tensors": (mlp, [mlp[2].weight, mlp[0].bias], mse, (X, y)),
        "float32 and float64": (mixed, list(mixed.parameters()), to_double, (X3,)),
        "tied weights": (tied, list(tied.parameters()), square, (X2,)),
        "shared submodule": (shared, list(shared.parameters()), square, (X2,)),
        "shared submodule, some tensors": (shared, [shared.a.bias, shared.c.weight], square, (X2,)),
        "integers and booleans": (knobs, [knobs.w, knobs.k, knobs.on], lambda m, X: m(X).sum(), (torch.randn(5, 3),)),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_evaluate_matches_one_point_at_a_time(name: str) -> None:
    model, params, loss, inputs = cases()[name]
    flat = tzb.FlatParams(params, allow_integer=True)
    P = flat.read() + np.random.default_rng(1).uniform(-1.3, 1.3, (37, flat.n))
    expected = one_at_a_time(flat, model, loss, inputs, P)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tensors = [id(t) for t in (*model.parameters(), *model.buffers())]
    for chunk in CHUNKS:
        batch = tzb.BatchObjective(model, loss, *inputs, chunk_size=chunk)
        got = batch.evaluate(flat, P)
        assert got.dtype == np.float64 and got.shape == (37,)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=f"chunk_size={chunk}")
        np.testing.assert_array_equal(batch.evaluate(flat, torch.as_tensor(P)), got)
        # the model holds its own tensors again, unchanged (nothing from inside vmap is left behind)
        assert [id(t) for t in (*model.parameters(), *model.buffers())] == tensors
        for k, v in model.state_dict().items():
            assert torch.equal(v, state[k]), k


def test_chunks_give_the_same_losses() -> None:
    model, params, loss, inputs = cases()["mlp"]
    flat = tzb.FlatParams(params)
    P = flat.read() + np.random.default_rng(2).normal(size=(50, flat.n))
    ref = tzb.BatchObjective(model, loss, *inputs, chunk_size=None).evaluate(flat, P)
    for chunk in (1, 7, 50, 1000, "auto"):
        np.testing.assert_array_equal(tzb.BatchObjective(model, loss, *inputs, chunk_size=chunk).evaluate(flat, P), ref)
    assert tzb.BatchObjective(model, loss, *inputs).evaluate(flat, np.empty((0, flat.n))).shape == (0,)


def test_points_per_pass() -> None:
    model = torch.nn.Linear(3, 1)
    flat = tzb.FlatParams(model.parameters())
    loss = lambda m, X: m(X).sum()  # noqa: E731

    def per_pass(rows: int, pop: int = 5000, chunk: Any = "auto") -> int:
        return tzb.BatchObjective(model, loss, torch.zeros(rows, 3), chunk_size=chunk).points_per_pass(flat, pop)

    assert per_pass(32) == 1024  # at most 1024
    assert per_pass(256) == 128
    assert per_pass(569) == 32768 // 569
    assert per_pass(10**6) == 16  # at least 16
    assert per_pass(256, pop=100) == 100
    assert per_pass(256, chunk=None) == 5000
    assert per_pass(256, chunk=300) == 300 and per_pass(256, pop=7, chunk=300) == 7
    assert tzb.BatchObjective(model, lambda m: m.weight.sum()).points_per_pass(flat, 5000) == 1024  # no inputs


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "all"])
def test_bad_chunk_size(bad: Any) -> None:
    with pytest.raises(ValueError, match="chunk_size: expected a positive int, None or 'auto'"):
        tzb.BatchObjective(torch.nn.Linear(2, 1), lambda m: m.weight.sum(), chunk_size=bad)


class Weights(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("rows_one_by_one", [False, True])
def test_objective_values_keeps_the_first_smallest_row(rows_one_by_one: bool) -> None:
    model = Weights()
    flat = tzb.FlatParams(model.parameters())
    seen: list[float] = []
    batches: list[np.ndarray] = []
    # with on_eval alone every row is handled in turn; with on_evals too, the population at once
    obj = tzb.Objective(
        flat,
        tzb.BatchObjective(model, lambda m: (m.w**2).sum()),
        on_eval=seen.append,
        on_evals=None if rows_one_by_one else batches.append,
    )
    f = obj.values(np.array([[2.0, 2.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    np.testing.assert_array_equal(f, [8.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(obj.best_x, [1.0, 0.0])  # ties: the first row wins, as row by row
    assert obj.best_f == 1.0 and obj.nfev == 4
    obj.values(np.array([[0.0, -1.0], [3.0, 0.0]]))  # no improvement: the best stays
    np.testing.assert_array_equal(obj.best_x, [1.0, 0.0])
    obj.values(np.array([[0.5, 0.0], [0.0, 0.25]]))
    np.testing.assert_array_equal(obj.best_x, [0.0, 0.25])
    assert obj.best_f == 0.0625 and obj.nfev == 8
    if rows_one_by_one:
        assert seen == [8.0, 1.0, 1.0, 1.0, 1.0, 9.0, 0.25, 0.0625] and not batches
    else:
        assert not seen and [b.tolist() for b in batches] == [[8.0, 1.0, 1.0, 1.0], [1.0, 9.0], [0.25, 0.0625]]
    np.testing.assert_array_equal(model.w.detach().numpy(), [0.0, 0.0])  # batched passes leave the tensors alone


def test_objective_values_with_a_non_finite_row() -> None:
    model = Weights()
    flat = tzb.FlatParams(model.parameters())
    batches: list[np.ndarray] = []
    obj = tzb.Objective(flat, tzb.BatchObjective(model, lambda m: (m.w**2).sum().sqrt().log()), on_evals=batches.append)
    with pytest.warns(tzb.NonFiniteLossWarning):
        f = obj.values(np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]]))  # log(0) = -inf
    assert f.tolist() == [np.inf, 0.0, np.log(0.5)] and not batches
    np.testing.assert_array_equal(obj.best_x, [0.5, 0.0])
    assert obj.n_nonfinite == 1
