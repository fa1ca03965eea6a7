"""FlatParams: layout, dtypes, in-place writes, gradients and bounds."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_read_write_round_trip_every_float_dtype(dtype: torch.dtype) -> None:
    a = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([{"params": [a]}, {"params": [b]}])
    assert flat.n == 10 and flat.offsets == [0, 6, 10]
    x = np.arange(10, dtype=np.float64) * 0.25  # exactly representable in every dtype
    flat.write(x)
    assert a.dtype == dtype and b.dtype == torch.float64
    np.testing.assert_array_equal(a.detach().double().reshape(-1).numpy(), x[:6])
    np.testing.assert_array_equal(flat.read(), x)
    assert flat.read().dtype == np.float64
    assert flat.eps == torch.finfo(dtype).eps if dtype != torch.float64 else flat.eps == np.finfo(np.float64).eps


def test_writes_are_in_place_and_views_survive() -> None:
    a = torch.zeros(3, 2, requires_grad=True)
    col = a[:, 1]
    ptr = a.data_ptr()
    flat = tzb.FlatParams([a])
    flat.write(np.arange(6.0))
    assert a.data_ptr() == ptr
    np.testing.assert_array_equal(col.detach().numpy(), [1.0, 3.0, 5.0])
    assert a.is_leaf and a.requires_grad


def test_complex_parameters_as_real_pairs() -> None:
    z = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64, requires_grad=True)
    flat = tzb.FlatParams([z])
    np.testing.assert_array_equal(flat.read(), [1, 2, 3, -4])
    flat.write(np.array([0.5, -0.5, 2.0, 0.0]))
    assert z.dtype == torch.complex64
    assert z.detach().tolist() == [0.5 - 0.5j, 2 + 0j]
    z.grad = torch.tensor([1 - 1j, 0 + 2j], dtype=torch.complex64)
    np.testing.assert_array_equal(flat.grad(), [1, -1, 0, 2])
    flat.set_grad(np.array([3.0, 4.0, 5.0, 6.0]))
    assert z.grad.tolist() == [3 + 4j, 5 + 6j]


def test_complex_gradient_convention_matches_real_pairs() -> None:
    """torch's .grad of a real loss of complex z gives d/dRe + i d/dIm, i.e. the real-pair gradient."""
    z = torch.tensor([0.3 + 0.7j], dtype=torch.complex128, requires_grad=True)
    loss = (z.real**2 * z.imag + torch.abs(z) ** 2).sum()
    loss.backward()
    flat = tzb.FlatParams([z])

    def f(v: torch.Tensor) -> torch.Tensor:
        return v[0] ** 2 * v[1] + v[0] ** 2 + v[1] ** 2

    ref = torch.func.grad(f)(torch.tensor([0.3, 0.7], dtype=torch.float64))
    np.testing.assert_allclose(flat.grad(), ref.numpy(), rtol=1e-14)


def test_missing_gradients_are_zeros_and_new_arrays() -> None:
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    (a.sum() * 2).backward()
    flat = tzb.FlatParams([a, b])
    g1 = flat.grad()
    np.testing.assert_array_equal(g1, [2, 2, 0, 0, 0])
    g2 = flat.grad()
    assert g1 is not g2 and not np.shares_memory(g1, g2)


def test_integers_allowed_only_on_request_and_rounded() -> None:
    i = torch.zeros(3, dtype=torch.int32)
    m = torch.zeros(2, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"integer dtype torch\.int32"):
        tzb.FlatParams([i])
    flat = tzb.FlatParams([i, m], allow_integer=True)
    assert flat.integer_mask.all()
    flat.write(np.array([1.4, -2.6, 7.5, 0.7, 0.2]))
    assert i.tolist() == [1, -3, 8] and i.dtype == torch.int32
    assert m.tolist() == [True, False]
    np.testing.assert_array_equal(flat.round_integers(np.array([1.4, -2.6, 7.5, 0.7, 0.2])), [1, -3, 8, 1, 0])
    rows = np.array([[1.4, -2.6, 7.5, 0.7, 0.2], [0.5, 2.5, -0.4, 0.4, 1.0]])  # a population, row by row
    np.testing.assert_array_equal(flat.round_integers(rows), [[1, -3, 8, 1, 0], [0, 2, -0, 0, 1]])


def test_group_bounds_scalars_tensors_and_per_tensor_lists() -> None:
    a = torch.zeros(2, 2, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    c = torch.zeros(1, requires_grad=True)
    groups = [
        {"params": [a, b], "bounds": ([torch.tensor([-1.0, -2.0]), -3.0], [1.0, None])},
        {"params": [c], "bounds": None},
    ]
    lo, hi = tzb.FlatParams(groups).bounds()
    np.testing.assert_array_equal(lo, [-1, -2, -1, -2, -3, -3, -3, -np.inf])
    np.testing.assert_array_equal(hi, [1, 1, 1, 1, np.inf, np.inf, np.inf, np.inf])
    assert tzb.FlatParams([a]).bounds() is None


def test_flat_scipy_bounds_objects_and_pairs() -> None:
    from scipy.optimize import Bounds

    a = torch.zeros(3, requires_grad=True)
    flat = tzb.FlatParams([a])
    lo, hi = flat.bounds(Bounds(0.0, [1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(lo, [0, 0, 0])
    np.testing.assert_array_equal(hi, [1, 2, 3])
    lo, hi = flat.bounds([(None, 1), (0, None), (-1, 1)])
    np.testing.assert_array_equal(lo, [-np.inf, 0, -1])
    with pytest.raises(ValueError, match=r"bounds\[1\]: expected a \(lo, hi\) pair"):
        flat.bounds([(0, 1), 5, (0, 1)])
    with pytest.raises(ValueError, match="NaN is not a valid bound"):
        flat.bounds([(0, float("nan"))] * 3)


def test_locate_names_parameter_and_element() -> None:
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, 3, requires_grad=True)
    flat = tzb.FlatParams([a, b])
    assert flat.locate(0).startswith("param_groups[0]['params'][0]")
    assert flat.locate(6).endswith("[1, 1]") and "params'][1]" in flat.locate(6)


def test_named_parameters_give_names_in_messages() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.named_parameters(), lr=0.1)
    flat = tzb.FlatParams(opt.param_groups)
    assert "'weight'" in flat.name(0) and "'bias'" in flat.name(1)


# ---------------------------------------------------------------------- zero-copy gradients
BIG = 1 << 16  # from this size a single float64 tensor hands its gradient over without a copy


def _fresh_grad(w: torch.Tensor) -> None:
    w.grad = None
    (w * torch.arange(w.numel(), dtype=w.dtype)).sum().backward()


def test_take_grad_hands_over_a_fresh_gradient_without_copying() -> None:
    w = torch.zeros(BIG, dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([w])
    _fresh_grad(w)
    address = w.grad.data_ptr()
    g = flat.take_grad()
    assert g.ctypes.data == address  # the gradient's own memory
    assert w.grad is None  # the next backward cannot write into g
    np.testing.assert_array_equal(g, np.arange(BIG, dtype=np.float64))
    _fresh_grad(w)
    g2 = flat.take_grad([g])
    assert not np.shares_memory(g, g2)
    np.testing.assert_array_equal(g, np.arange(BIG, dtype=np.float64))


def _reused(w: torch.Tensor, keep: list) -> None:
    keep.append(torch.ones(BIG, dtype=torch.float64))
    w.grad = keep[-1]  # the closure keeps its own reference


def _view(w: torch.Tensor, keep: list) -> None:
    w.grad = torch.ones(2 * BIG, dtype=torch.float64)[:BIG]  # shares storage with a bigger block


def _borrowed(w: torch.Tensor, keep: list) -> None:
    arr = np.ones(BIG)
    keep.append(arr)
    w.grad = torch.from_numpy(arr)  # memory owned by numpy


def _other_grad(w: torch.Tensor, keep: list) -> None:
    v = torch.zeros(BIG, dtype=torch.float64, requires_grad=True)
    (v * 1.0).sum().backward()
    keep.append(v)
    w.grad = v.grad  # also v's gradient: v.grad.zero_() would change it


def _weakly_held(w: torch.Tensor, keep: list) -> None:
    w.grad = torch.ones(BIG, dtype=torch.float64)
    keep.append(weakref.ref(w.grad))


def _saved_in_graph(w: torch.Tensor, keep: list) -> None:
    w.grad = torch.ones(BIG, dtype=torch.float64)
    u = torch.zeros(BIG, dtype=torch.float64, requires_grad=True)
    keep.append((u * w.grad).sum())  # the graph keeps the gradient tensor for its backward


@pytest.mark.parametrize("assign", [_reused, _view, _borrowed, _other_grad, _weakly_held, _saved_in_graph])
def test_take_grad_copies_gradients_held_elsewhere(assign: Any) -> None:
    w = torch.zeros(BIG, dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([w])
    keep: list = []
    assign(w, keep)
    before = w.grad
    g = flat.take_grad()
    assert w.grad is before  # left in place
    assert not np.shares_memory(g, before.numpy())
    np.testing.assert_array_equal(g, np.ones(BIG))


def test_take_grad_copies_a_gradient_sharing_memory_with_a_held_array() -> None:
    w = torch.zeros(BIG, dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([w])
    _fresh_grad(w)
    g = flat.take_grad()
    w.grad = torch.from_numpy(g)  # the closure hands back memory given out before
    g2 = flat.take_grad([g])
    assert not np.shares_memory(g, g2)


def test_take_grad_copies_small_float32_and_multi_tensor_gradients() -> None:
    for single in (torch.zeros(10, dtype=torch.float64), torch.zeros(BIG, dtype=torch.float32)):
        single.requires_grad_(True)
        _fresh_grad(single)
        before = single.grad
        g = tzb.FlatParams([single]).take_grad()
        assert single.grad is before and g.dtype == np.float64
        assert not np.shares_memory(g, before.numpy())
    a = torch.zeros(BIG, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    _fresh_grad(a)
    _fresh_grad(b)
    ga = a.grad
    out = tzb.FlatParams([a, b]).take_grad()
    assert a.grad is ga and not np.shares_memory(out, ga.numpy())


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def torch_threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Large silent copies go through numpy with one torch thread and through torch with more."""
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.complex128])
@pytest.mark.parametrize("silent", [True, False])
def test_write_keeping_keeps_x_itself_and_writes_it(dtype: torch.dtype, silent: bool, torch_threads: int) -> None:
    a = torch.zeros(BIG, dtype=dtype)
    b = torch.zeros(2, 3, dtype=dtype)
    flat = tzb.FlatParams([a, b])
    n = flat.n
    x = np.random.default_rng(0).normal(size=n)
    keep = np.full(n, np.nan)
    flat.write_keeping(x, keep, silent=silent)
    np.testing.assert_array_equal(keep, x)  # x exactly, even where the tensors round it
    real = torch.empty(0, dtype=dtype)
    real = torch.view_as_real(real) if real.is_complex() else real
    np.testing.assert_array_equal(flat.read(), x.astype(real.numpy().dtype))
    assert a.data_ptr() == flat.params[0].data_ptr()  # written in place


@pytest.mark.parametrize("x_kind", ["contiguous", "reversed", "float32"])
def test_silent_large_writes_take_any_vector(x_kind: str, torch_threads: int) -> None:
    a = torch.zeros(BIG, dtype=torch.float64)
    b = torch.zeros(4, 5, dtype=torch.float64)
    flat = tzb.FlatParams([a, b])
    x = np.arange(flat.n, dtype=np.float64)
    x = {"contiguous": x, "reversed": x[::-1], "float32": x.astype(np.float32)}[x_kind]
    flat.write(x, silent=True)
    np.testing.assert_array_equal(flat.read(), x.astype(np.float64))
    np.testing.assert_array_equal(b.numpy().ravel(), x[BIG:])


@pytest.mark.parametrize("sizes", [[5 * BIG // 2, 7], [3, BIG + 1, 2 * BIG]], ids=["uneven-pieces", "three-tensors"])
def test_write_keeping_in_pieces_copies_every_entry(sizes: list[int], torch_threads: int) -> None:
    params = [torch.zeros(k, dtype=torch.float64, requires_grad=True) for k in sizes]
    flat = tzb.FlatParams(params)
    x = np.random.default_rng(1).normal(size=flat.n)
    keep = np.full(flat.n, np.nan)
    version = flat.version
    flat.write_keeping(x, keep, silent=True)
    np.testing.assert_array_equal(keep, x)
    np.testing.assert_array_equal(torch.cat([p.detach() for p in params]).numpy(), x)
    assert flat.version == version + 1
    assert all(p._version == 0 for p in params)  # silent: autograd version counters untouched


@pytest.mark.parametrize("silent", [True, False])
def test_large_writes_from_a_read_only_vector_do_not_warn(silent: bool, torch_threads: int) -> None:
    a = torch.zeros(BIG, dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([a])
    x = np.arange(BIG, dtype=np.float64)
    x.flags.writeable = False  # as scipy sometimes hands x over
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only array
        flat.write(x, silent=silent)
        flat.write_keeping(x, np.empty(BIG), silent=silent)
    np.testing.assert_array_equal(a.detach().numpy(), x)


def test_large_tensors_that_share_memory_are_rejected(torch_threads: int) -> None:
    base = torch.zeros(2 * BIG, dtype=torch.float64)
    a = base[:BIG].requires_grad_(True)  # leaf views of one block, overlapping
    b = base[BIG // 2 : BIG // 2 + BIG].requires_grad_(True)
    with pytest.raises(ValueError, match=r"\['params'\]\[0\].* and .*\['params'\]\[1\].* share memory"):
        tzb.FlatParams([a, b])
