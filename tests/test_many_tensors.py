"""Many small tensors: batched writes, reads and gradient gathers agree with tensor-by-tensor copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import torchzero_bridge as tzb
from torchzero_bridge.core.flat_copy import ElementMap, GradGather


def _mixed_params() -> list[torch.Tensor]:
    """Shapes repeat (so gradients group), dtypes mix, one complex, one non-contiguous, one 0-d."""
    ps: list[torch.Tensor] = []
    for i in range(24):
        dtype = (torch.float64, torch.float32, torch.float16)[i % 3]
        shape = ((2, 3), (4,), ())[i % 3 if i != 7 else 0]
        ps.append(torch.zeros(shape, dtype=dtype))
    ps.append(torch.zeros(3, 2, dtype=torch.float64).t())  # non-contiguous (strides 1, 2)
    ps.append(torch.zeros(2, dtype=torch.complex128))
    return [p.requires_grad_() for p in ps]


def _hand_write(params: list[torch.Tensor], x: np.ndarray) -> None:
    """The reference: a Python loop of in-place copies in flat order."""
    k = 0
    with torch.no_grad():
        for p in params:
            r = torch.view_as_real(p) if p.is_complex() else p
            r.copy_(torch.from_numpy(x[k : k + r.numel()].copy()).view(r.shape))
            k += r.numel()


def _hand_read(params: list[torch.Tensor]) -> np.ndarray:
    parts = [(torch.view_as_real(p) if p.is_complex() else p).detach().double().reshape(-1) for p in params]
    return torch.cat(parts).numpy()


@pytest.mark.parametrize("silent", [False, True])
def test_batched_write_and_read_match_a_loop_of_copies(silent: bool) -> None:
    ps = _mixed_params()
    ref = [p.detach().clone().requires_grad_() for p in ps]
    flat = tzb.FlatParams(ps)
    assert flat._elements is not None  # the batched path is the one under test
    ptrs = [p.data_ptr() for p in ps]
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal(flat.n)
        x.setflags(write=False)  # a read-only vector is accepted
        flat.write(x, silent=silent)
        _hand_write(ref, x)
        for p, q in zip(ps, ref):
            assert torch.equal(p.detach(), q.detach())  # same rounding in every dtype
        np.testing.assert_array_equal(flat.read(), _hand_read(ref))
    assert [p.data_ptr() for p in ps] == ptrs  # written in place


def test_batched_write_keeping_keeps_x_and_views_survive() -> None:
    ps = [torch.zeros(2, 2, dtype=torch.float64, requires_grad=True) for _ in range(6)]
    col = ps[3][:, 1]
    flat = tzb.FlatParams(ps)
    x = np.arange(24.0)
    keep = np.empty(24)
    flat.write_keeping(x, keep, silent=True)
    np.testing.assert_array_equal(keep, x)
    assert col.tolist() == [13.0, 15.0]
    v = flat.version
    flat.write(x + 1, silent=True)
    assert flat.version == v + 1 and col.tolist() == [14.0, 16.0]


def test_batched_gradient_gather_matches_concatenation() -> None:
    ps = [p for p in _mixed_params() if not p.is_complex() and p.is_contiguous()]
    flat = tzb.FlatParams(ps)
    assert flat._gather is not None
    rng = np.random.default_rng(1)
    for _ in range(2):
        for p in ps:  # new tensors each time, as a backward pass leaves them
            p.grad = torch.from_numpy(rng.standard_normal(p.shape)).to(p.dtype)
        expected = torch.cat([p.grad.double().reshape(-1) for p in ps]).numpy()  # type: ignore[union-attr]
        g = flat.grad()
        np.testing.assert_array_equal(g, expected)
        g2 = flat.grad()
        assert not np.shares_memory(g, g2)  # a new vector every time


def test_gather_with_missing_gradients_falls_back_to_zeros_and_none() -> None:
    ps = [torch.zeros(3, requires_grad=True) for _ in range(8)]
    flat = tzb.FlatParams(ps)
    assert flat.grad_if_any() is None
    ps[2].grad = torch.ones(3)
    g = flat.grad()
    assert g.tolist() == [0.0] * 6 + [1.0] * 3 + [0.0] * 15


def test_gather_of_gradients_that_require_grad() -> None:
    ps = [torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    loss = sum(((i + 1) * p**2 + (i + 1) * p).sum() for i, p in enumerate(ps))
    grads = torch.autograd.grad(loss, ps, create_graph=True)  # type: ignore[arg-type]
    for p, g in zip(ps, grads):
        p.grad = g
    assert ps[0].grad is not None and ps[0].grad.requires_grad
    np.testing.assert_array_equal(tzb.FlatParams(ps).grad(), np.repeat(np.arange(1.0, 6.0), 2))


def test_groupings_are_skipped_where_they_would_not_pay() -> None:
    assert GradGather.build([torch.zeros(i + 1) for i in range(8)]) is None  # every shape distinct
    assert ElementMap.build([torch.zeros(2, dtype=torch.bfloat16)]) is None  # no numpy dtype
    ints = [torch.zeros(2, dtype=torch.int64) for _ in range(6)]
    flat = tzb.FlatParams(ints, allow_integer=True)
    assert flat._elements is None  # integers are rounded tensor by tensor
    flat.write(np.full(12, 1.6), silent=True)
    assert ints[0].tolist() == [2, 2]


@pytest.mark.parametrize("torch_threads", [1, 2])
def test_many_tensor_fit_matches_a_single_tensor_fit(torch_threads: int) -> None:
    old = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        target = np.linspace(-1.0, 2.0, 40)
        many = [torch.zeros(1, dtype=torch.float64, requires_grad=True) for _ in range(40)]
        one = torch.zeros(40, dtype=torch.float64, requires_grad=True)
        t = torch.from_numpy(target)

        def closure_many(backward: bool = True) -> torch.Tensor:
            opt_many.zero_grad()
            loss = ((torch.cat(many) - t) ** 4).sum() + (torch.cat(many) ** 2).sum()
            if backward:
                loss.backward()
            return loss

        opt_many = tzb.MinimizeWrapper(many, {"method": "BFGS"})
        opt_many.step(closure_many)

        def f(w: np.ndarray) -> float:
            return float(((w - target) ** 4).sum() + (w**2).sum())

        def g(w: np.ndarray) -> np.ndarray:
            return 4 * (w - target) ** 3 + 2 * w

        ref = minimize(f, np.zeros(40), jac=g, method="BFGS")
        got = torch.cat(many).detach().numpy()
        np.testing.assert_allclose(got, ref.x, atol=1e-10)
        assert opt_many.result.nfev == ref.nfev
        del one
    finally:
        torch.set_num_threads(old)
