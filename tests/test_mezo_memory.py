"""Randomized estimators: exact restoration, interrupts, passes over the parameters, memory, MeZO's SGD path."""

from __future__ import annotations

import signal
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import torchzero_bridge.zeroth_order.directions as directions
import torchzero_bridge.zeroth_order.estimators.walk as walk_module
from torchzero_bridge.errors import NonFiniteLossWarning
from torchzero_bridge.zeroth_order import RDSA, SPSA, GaussianSmoothing, GradChain, MeZO, RandomGrad, RandomizedFDM
from torchzero_bridge.zeroth_order.estimators.mezo import is_plain_sgd

DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64]


def weights(dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(20, 30), (30,), (1, 20), (0,)]
    out = [(torch.randn(s, generator=g) * 0.05).to(dtype).requires_grad_(True) for s in shapes]
    out.append((torch.randn(30, 20, generator=g) * 0.05).to(dtype).t().requires_grad_(True))  # non-contiguous
    return out


def loss_of(params: list[torch.Tensor]) -> Callable[..., torch.Tensor]:
    def closure(backward: bool = True) -> torch.Tensor:
        return sum(((p.double() - 0.3) ** 2).sum() for p in params)  # type: ignore[return-value]

    return closure


def snapshot(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def same(params: list[torch.Tensor], start: list[torch.Tensor]) -> bool:
    return all(torch.equal(p.detach(), x) for p, x in zip(params, start))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h", [1e-3, 1e-1])
def test_mezo_without_opt_leaves_parameters_bit_identical_over_100_steps(dtype: torch.dtype, h: float) -> None:
    params = weights(dtype)
    start = snapshot(params)
    mezo = MeZO(params, h=h, seed=0)
    for _ in range(100):
        mezo.step(loss_of(params))
    assert same(params, start)
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "make",
    [
        lambda p: SPSA(p, h=1e-2, seed=1),
        lambda p: RDSA(p, h=1e-2, n_samples=2, formula="forward3", seed=2),
        lambda p: GaussianSmoothing(p, n_samples=3, seed=3),
        lambda p: RandomizedFDM(p, h=1e-2, formula="central5", distribution="sphere", seed=4),
        lambda p: MeZO(p, h=1e-2, formula="backward3", distribution="uniform", seed=5, fill_grad=True),
    ],
    ids=["SPSA", "RDSA", "GaussianSmoothing", "RandomizedFDM", "MeZO-grad"],
)
def test_estimators_without_opt_restore_every_dtype_exactly(dtype: torch.dtype, make: Callable) -> None:
    params = weights(dtype)
    start = snapshot(params)
    est = make(params)
    for _ in range(20):
        est.step(loss_of(params))
    assert same(params, start)
    assert all(p.grad is not None and p.grad.dtype == dtype for p in params)


ESTIMATORS: dict[str, Callable[[list[torch.Tensor]], Any]] = {
    "MeZO": lambda p: MeZO(p, h=1e-2, seed=0),
    "MeZO+SGD": lambda p: MeZO(p, h=1e-2, seed=0, opt=lambda q: torch.optim.SGD(q, lr=0.1)),
    "MeZO+SGD-n3": lambda p: MeZO(p, h=1e-2, n_samples=3, seed=0, opt=lambda q: torch.optim.SGD(q, lr=0.1)),
    "SPSA+Adam": lambda p: SPSA(p, h=1e-2, seed=0, opt=lambda q: torch.optim.Adam(q, lr=0.1)),
    "RandomizedFDM-central5": lambda p: RandomizedFDM(p, h=1e-2, formula="central5", seed=0),
    "GaussianSmoothing": lambda p: GaussianSmoothing(p, n_samples=2, seed=0),
    "RandomGrad": lambda p: RandomGrad(p, lr=1e-2, best_of=2, seed=0),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("at_call", [1, 2, 3])
def test_keyboard_interrupt_in_the_closure_leaves_the_start(name: str, dtype: torch.dtype, at_call: int) -> None:
    params = weights(dtype)
    est = ESTIMATORS[name](params)
    est.step(loss_of(params))  # a normal step first: the interrupted one starts elsewhere
    calls = [0]
    inner = loss_of(params)

    def closure(backward: bool = True) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == at_call:
            raise KeyboardInterrupt
        return inner()

    with pytest.raises(KeyboardInterrupt):
        for _ in range(3):  # the call may fall in a later step
            start = snapshot(params)
            est.step(closure)
    assert same(params, start)


def count_fills(monkeypatch: pytest.MonkeyPatch, on_call: Callable[[int], None] | None = None) -> list[int]:
    """Count the direction sampler's chunk fills (call ``on_call(n)`` before the n-th)."""
    calls = [0]
    original = directions.DirectionSampler._fill

    def fill(self: Any, *args: Any) -> torch.Tensor:
        calls[0] += 1
        if on_call is not None:
            on_call(calls[0])
        return original(self, *args)

    monkeypatch.setattr(directions.DirectionSampler, "_fill", fill)
    return calls


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("how", ["raise", "sigint"])
def test_interrupt_in_the_middle_of_a_move_leaves_the_start(
    monkeypatch: pytest.MonkeyPatch, name: str, how: str
) -> None:
    monkeypatch.setattr(directions, "CHUNK", 256)  # several pieces per tensor
    monkeypatch.setattr(walk_module, "CHUNK", 256)
    calls = count_fills(monkeypatch)
    params = weights(torch.bfloat16)
    start = snapshot(params)
    ESTIMATORS[name](params).step(loss_of(params))
    per_step, finished = calls[0], snapshot(params)
    assert per_step > 8
    ends = {"start": 0, "finished step": 0}
    for n in range(1, per_step + 1):

        def on_call(k: int, n: int = n) -> None:
            if k == n:
                if how == "raise":
                    raise KeyboardInterrupt
                signal.raise_signal(signal.SIGINT)

        params = weights(torch.bfloat16)
        est = ESTIMATORS[name](params)
        count_fills(monkeypatch, on_call)
        with pytest.raises(KeyboardInterrupt):
            est.step(loss_of(params))
        # never at a trial point or half-way: at the start, or at the end of the step when the
        # interrupt came on the way back (which is then completed)
        at_start, at_end = same(params, start), same(params, finished)
        assert at_start or at_end, (name, how, n)
        ends["start" if at_start else "finished step"] += 1
    assert ends["start"] > 0


@pytest.mark.parametrize(
    ("make", "passes"),
    [
        (lambda p: MeZO(p, seed=0, opt=lambda q: torch.optim.SGD(q, lr=0.1)), 3),
        (lambda p: MeZO(p, seed=0), 3),
        (lambda p: MeZO(p, seed=0, opt=lambda q: torch.optim.Adam(q, lr=0.1)), 3),
        (lambda p: SPSA(p, seed=0, opt=lambda q: torch.optim.SGD(q, lr=0.1)), 3),
        (lambda p: MeZO(p, n_samples=2, seed=0, opt=lambda q: torch.optim.SGD(q, lr=0.1)), 8),
        (lambda p: MeZO(p, distribution="sphere", seed=0), 4),
        (lambda p: GaussianSmoothing(p, n_samples=5, seed=0), 10),
        (lambda p: RandomGrad(p, lr=0.1, seed=0), 3),
    ],
)
def test_passes_over_the_parameters_per_step(monkeypatch: pytest.MonkeyPatch, make: Callable, passes: int) -> None:
    params = [torch.zeros(10, requires_grad=True), torch.zeros(3, 4, requires_grad=True)]
    est = make(params)
    calls = count_fills(monkeypatch)
    evaluations = [0]

    def closure(backward: bool = True) -> torch.Tensor:
        evaluations[0] += 1
        return sum((p**2).sum() for p in params)  # type: ignore[return-value]

    est.step(closure)
    assert calls[0] == passes * len(params)  # one fill per tensor per pass (tensors below CHUNK)
    assert evaluations[0] == est.nfev


def test_plain_sgd_path_matches_the_gradient_path() -> None:
    def run(fill_grad: bool | None, **sgd: Any) -> list[torch.Tensor]:
        params = weights(torch.float64)
        mezo = MeZO(params, h=1e-3, n_samples=2, seed=3, fill_grad=fill_grad, opt=lambda q: torch.optim.SGD(q, **sgd))
        sched = torch.optim.lr_scheduler.StepLR(mezo.opt, step_size=5, gamma=0.5)
        for _ in range(20):
            with warnings.catch_warnings():  # the seed path never calls opt.step(), which StepLR notes
                warnings.simplefilter("ignore", UserWarning)
                mezo.step(loss_of(params))
                sched.step()
        assert all((p.grad is None) == (fill_grad is None) for p in params)
        return snapshot(params)

    # a small rate: with ~1850 entries a larger one makes the run chaotic, and rounding differences grow
    for sgd in ({"lr": 1e-4}, {"lr": 1e-4, "maximize": True}):
        fused, general = run(None, **sgd), run(True, **sgd)
        assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(fused, general))
        moved = max(float((a - x).abs().max()) for a, x in zip(fused, snapshot(weights(torch.float64))) if a.numel())
        assert moved > 1e-3


def test_which_sgd_qualifies_and_fill_grad_errors() -> None:
    w = [torch.zeros(2, requires_grad=True)]
    assert is_plain_sgd(torch.optim.SGD(w, lr=0.1, maximize=True, dampening=0.5))
    assert not is_plain_sgd(torch.optim.SGD(w, lr=0.1, momentum=0.9))
    assert not is_plain_sgd(torch.optim.SGD(w, lr=0.1, weight_decay=1e-4))
    assert not is_plain_sgd(torch.optim.Adam(w))

    class MySGD(torch.optim.SGD):
        pass

    assert not is_plain_sgd(MySGD(w, lr=0.1))
    hooked = torch.optim.SGD(w, lr=0.1)
    hooked.register_step_post_hook(lambda *a: None)
    assert not is_plain_sgd(hooked)
    # momentum: the general path fills .grad and lets SGD keep its buffer
    p = torch.ones(3, requires_grad=True)
    MeZO([p], seed=0, opt=lambda q: torch.optim.SGD(q, lr=0.1, momentum=0.9)).step(lambda backward=True: p.sum())
    assert p.grad is not None
    with pytest.raises(ValueError, match=r"fill_grad=False needs opt=None or a plain torch\.optim\.SGD.*Adam"):
        MeZO([p], fill_grad=False, opt=lambda q: torch.optim.Adam(q))
    with pytest.raises(TypeError, match="fill_grad expected True, False or None"):
        MeZO([p], fill_grad="yes")  # type: ignore[arg-type]


def test_grad_chain_stage_fills_grad_and_matches_direct_use() -> None:
    a, b = weights(torch.float64), weights(torch.float64)
    chain = GradChain(a, [MeZO(h=1e-3, seed=0), (torch.optim.Adam, {"lr": 1e-2})])
    direct = MeZO(b, h=1e-3, seed=0, opt=lambda q: torch.optim.Adam(q, lr=1e-2))
    for _ in range(5):
        chain.step(loss_of(a))
        direct.step(loss_of(b))
    assert all(torch.equal(x, y) for x, y in zip(snapshot(a), snapshot(b)))


def test_projected_grads_rebuild_the_estimate() -> None:
    params = weights(torch.float64)
    mezo = MeZO(params, h=1e-3, n_samples=2, seed=1, fill_grad=True)
    mezo.step(loss_of(params))
    rebuilt = [torch.zeros_like(p) for p in params]
    for seed, deriv in mezo.projected_grads:
        for r, d in zip(rebuilt, mezo.sampler.sample(seed, params)):
            r.add_(d, alpha=deriv / 1e-3 / 2)
    assert all(torch.allclose(p.grad, r, rtol=1e-12, atol=0) for p, r in zip(params, rebuilt))


def test_non_finite_loss_leaves_parameters_and_warns() -> None:
    params = weights(torch.float32)
    start = snapshot(params)
    mezo = MeZO(params, seed=0, opt=lambda q: torch.optim.SGD(q, lr=0.1))
    with pytest.warns(NonFiniteLossWarning, match="no update was applied"):
        mezo.step(lambda backward=True: torch.tensor(float("nan")))
    assert same(params, start)


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensors created by torch operations while the mode is on (closure excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.paused = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.paused:
            return out
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                n = t.untyped_storage().nbytes()
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, n)
        return out

    def _free(self, n: int) -> None:
        self.live -= n


def peak_of(make: Callable[[list[torch.Tensor]], Any], with_grads: bool = True) -> tuple[int, int, int]:
    torch.manual_seed(0)
    params = [(torch.randn(20_000, dtype=torch.float64) * 0.05).requires_grad_(True) for _ in range(32)]
    if with_grads:
        for p in params:
            p.grad = torch.zeros_like(p)
    est = make(params)
    tracker = LiveTensorBytes()

    def closure(backward: bool = True) -> torch.Tensor:
        tracker.paused = True
        try:
            return sum((p**2).sum() for p in params)  # type: ignore[return-value]
        finally:
            tracker.paused = False

    with tracker:
        est.step(closure)
    return tracker.peak, params[0].numel() * 8, sum(p.numel() for p in params) * 8


def test_mezo_seed_path_allocates_nothing_parameter_sized() -> None:
    for opt in (None, lambda q: torch.optim.SGD(q, lr=1e-3)):
        peak, one, total = peak_of(lambda p, opt=opt: MeZO(p, n_samples=2, seed=0, opt=opt), with_grads=False)
        # scratch: the direction piece, the simulated chain, flags, positions and corrections of the
        # wrong entries of one tensor (~3 of the 32 tensors), and what is kept of every tensor: three
        # bytes per entry that comes back wrong (~10% of these N(0, 0.05²) float64 entries; keeping
        # their 8-byte values and a mask instead would cost 0.12 of the total)
        assert peak <= 3 * one + 0.05 * total, (peak / one, peak / total)


@pytest.mark.parametrize(
    ("make", "optimizer_state"),
    [
        (lambda p: SPSA(p, seed=0, opt=lambda q: torch.optim.SGD(q, lr=1e-3)), 0),
        (lambda p: RDSA(p, formula="forward3", seed=0), 0),
        (lambda p: MeZO(p, distribution="sphere", seed=0, opt=lambda q: torch.optim.SGD(q, lr=1e-3, momentum=0.9)), 1),
    ],
    ids=["SPSA+SGD", "RDSA-forward3", "MeZO+momentum"],
)
def test_one_sample_estimates_keep_the_start_in_grad(
    monkeypatch: pytest.MonkeyPatch, make: Callable, optimizer_state: int
) -> None:
    def no_keep(*args: Any) -> None:
        raise AssertionError("one sample: the start is held in .grad, nothing is simulated or kept")

    monkeypatch.setattr(walk_module.Walk, "_keep", no_keep)
    peak, one, total = peak_of(make)
    assert peak - optimizer_state * total <= 2 * one, (peak / one, peak / total)  # scratch of one tensor only


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@pytest.mark.parametrize("dtype", DTYPES)
def test_restoration_keeps_every_bit_signed_zeros_and_far_entries(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    # -0.0 (equal to 0.0 in a float compare), entries far below h (their bits are lost in x ± h d,
    # so their correction does not fit in a byte) and ordinary ones
    # 3·2**16 + 5 entries: positions in four blocks of 2**16
    start = torch.randn(3 * 2**16 + 5, generator=torch.Generator().manual_seed(0)) * 0.05
    start[::9831] = torch.tensor([0.0, -0.0, 1e-7, -3e-6, 2e-4, 1.0, -0.02, 0.0, -0.0, 1e-30] * 2)
    start = start.to(dtype)
    restores = []
    original = walk_module._restore

    def spy(p: torch.Tensor, kept: Any) -> None:
        restores.append(kept)
        original(p, kept)

    monkeypatch.setattr(walk_module, "_restore", spy)
    for make in (
        lambda p: MeZO(p, h=1e-2, seed=0),  # kept corrections
        lambda p: SPSA(p, h=1e-2, n_samples=2, seed=1),  # kept corrections, .grad in use
        lambda p: RDSA(p, h=1e-2, formula="central5", seed=2),  # the start held in .grad
    ):
        w = start.clone().requires_grad_(True)
        est = make([w])
        for _ in range(10):
            est.step(loss_of([w]))
        assert torch.equal(bits(w), bits(start))
    assert any(far is not None for _, _, far, _ in restores)  # the fallback was exercised


@pytest.mark.parametrize(
    ("make", "optimizer_state"),
    [
        (lambda p: SPSA(p, n_samples=2, seed=0, opt=lambda q: torch.optim.SGD(q, lr=1e-3)), 0),
        (lambda p: RDSA(p, seed=0), 0),
        (lambda p: RandomizedFDM(p, distribution="sphere", formula="central5", seed=0), 0),
        (lambda p: GaussianSmoothing(p, n_samples=3, seed=0), 0),
        (lambda p: RandomGrad(p, lr=1e-3, seed=0), 0),
        (lambda p: MeZO(p, seed=0, opt=lambda q: torch.optim.Adam(q, lr=1e-3)), 2),  # Adam's two moments
    ],
    ids=["SPSA+SGD", "RDSA", "RandomizedFDM", "GaussianSmoothing", "RandomGrad", "MeZO+Adam"],
)
def test_estimators_hold_no_copy_of_the_parameters(make: Callable, optimizer_state: int) -> None:
    peak, one, total = peak_of(make)
    assert peak - optimizer_state * total <= 4 * one + 0.2 * total < 0.4 * total, (peak, one, total)
