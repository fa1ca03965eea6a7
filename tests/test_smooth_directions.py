"""AR1 and Smoothed direction distributions: statistics against their formulas, seeds, state round trips."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.zeroth_order.directions import CHUNK
from torchzero_bridge.zeroth_order.smooth_directions import make_sampler


def _ar1_sequence(rho: float, steps: int, n: int, seed: int = 0) -> np.ndarray:
    sampler = make_sampler(tzb.AR1(rho), "test")
    w = torch.zeros(n, dtype=torch.float64)
    gen = np.random.default_rng(seed)
    return np.stack([sampler.draw(int(gen.integers(2**62)), [w])[0].numpy() for _ in range(steps)])


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ar1_has_unit_variance_and_lag_correlation_rho_to_the_lag(rho: float) -> None:
    d = _ar1_sequence(rho, 3000, 64)  # 3000 steps of 64 independent chains
    var = float((d**2).mean())
    lag1 = float((d[1:] * d[:-1]).mean()) / var
    lag2 = float((d[2:] * d[:-2]).mean()) / var
    # effective samples ~ 192000 (1 - rho) / (1 + rho) >= 10000: standard errors below 0.015
    assert var == pytest.approx(1.0, abs=0.05)
    assert lag1 == pytest.approx(rho, abs=0.03)
    assert lag2 == pytest.approx(rho**2, abs=0.03)


def test_ar1_step_is_the_recursion_over_the_base_innovations() -> None:
    rho = 0.6
    w = [torch.zeros(3, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)]
    ar1 = make_sampler(tzb.AR1(rho, tzb.Smoothed((1.0, 3.0))), "test")
    base = make_sampler(tzb.Smoothed((1.0, 3.0)), "test")
    prev = base.sample(10, w)
    assert all(torch.equal(a, b) for a, b in zip(ar1.draw(10, w), prev))  # d_0 = z_0
    for seed in (11, 12, 13):
        got = ar1.draw(seed, w)
        z = base.sample(seed, w)
        for g, p, zi in zip(got, prev, z):
            torch.testing.assert_close(g, rho * p + math.sqrt(1 - rho**2) * zi, rtol=0, atol=1e-14)
        prev = got


def test_ar1_candidates_between_commits_share_the_previous_direction() -> None:
    w = [torch.zeros(6, dtype=torch.float64)]
    s = make_sampler(tzb.AR1(0.9), "test")
    d0 = s.draw(1, w)[0]
    a, b = s.sample(2, w)[0], s.sample(3, w)[0]
    assert torch.equal(s.sample(2, w)[0], a)  # regenerated bit for bit until a commit
    s.commit(3, w)
    assert torch.equal(s.prev[0], b)
    assert not torch.equal(s.sample(2, w)[0], a)
    assert not torch.equal(a, d0)


def _kernel_autocorrelation(kernel: tuple[float, ...], lag: int) -> float:
    k = np.asarray(kernel) / np.linalg.norm(kernel)
    full = np.correlate(k, k, mode="full")  # index len(k) - 1 is lag 0
    centre = len(k) - 1
    return float(full[centre + lag]) if lag < len(k) else 0.0


@pytest.mark.parametrize("kernel", [(1.0, 2.0, 1.0), (1.0, 1.0, 1.0, 1.0, 1.0), (0.5, -1.0, 2.0)])
def test_smoothed_neighbour_correlation_is_the_kernels_autocorrelation(kernel: tuple[float, ...]) -> None:
    w = torch.zeros(4000, 64, dtype=torch.float64)
    d = make_sampler(tzb.Smoothed(kernel), "test").sample(5, [w])[0].numpy()
    var = float((d**2).mean())
    assert var == pytest.approx(1.0, abs=0.02)  # 256000 entries
    for lag in range(len(kernel) + 1):
        got = float((d[:, lag:] * d[:, : d.shape[1] - lag]).mean())
        assert got == pytest.approx(_kernel_autocorrelation(kernel, lag), abs=0.02), lag
    across_rows = float((d[1:] * d[:-1]).mean())
    assert across_rows == pytest.approx(0.0, abs=0.02)


def test_smoothed_spectrum_matches_the_kernels() -> None:
    kernel, width = (1.0, 2.0, 1.0), 32
    w = torch.zeros(8000, width, dtype=torch.float64)
    d = make_sampler(tzb.Smoothed(kernel), "test").sample(2, [w])[0].numpy()
    periodogram = (np.abs(np.fft.fft(d, axis=1)) ** 2).mean(0) / width
    # E|FFT(d)|^2 / L = sum over lags of (1 - |l| / L) r(l) cos(w l) for the stationary rows
    omega = 2 * np.pi * np.arange(width) / width
    expected = np.ones(width)
    for lag in range(1, len(kernel)):
        expected += 2 * (1 - lag / width) * _kernel_autocorrelation(kernel, lag) * np.cos(omega * lag)
    # each frequency averages 8000 roughly exponential values: relative standard error ~ 1.1%
    np.testing.assert_allclose(periodogram, expected, rtol=0.06, atol=0.005)
    assert expected[width // 2] < 0.01 * expected[0]  # (1, 2, 1) all but removes the highest frequency


def test_smoothed_pieces_stitch_across_chunks_and_layouts() -> None:
    rows, width = CHUNK // 100 + 7, 100  # more than one chunk; chunk boundaries cut rows
    contiguous = torch.zeros(rows, width, dtype=torch.float64)
    strided = torch.zeros(width, rows, dtype=torch.float64).T  # one piece, generated whole
    s = make_sampler(tzb.Smoothed(), "test")
    a, b = s.sample(9, [contiguous])[0], s.sample(9, [strided])[0]
    assert torch.equal(a, b)
    assert len([sl for _, sl, _ in s.pieces(9, [contiguous])]) == 2


def test_smoothed_estimates_are_the_gradient_times_the_kernels_correlation_matrix() -> None:
    # E[d d^T] = C (C[j, j'] = r(|j - j'|) within a row, 0 across rows), so E[(g.d) d] = C g
    a = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0], dtype=torch.float64)
    r1 = _kernel_autocorrelation((1.0, 2.0), 1)
    row = torch.tensor([[1.0, r1, 0.0], [r1, 1.0, r1], [0.0, r1, 1.0]], dtype=torch.float64)
    expected = torch.block_diag(row, row) @ a
    ests = []
    w = torch.zeros(2, 3, dtype=torch.float64)
    est = tzb.RandomizedFDM([w], h=1e-3, distribution=tzb.Smoothed((1.0, 2.0)), seed=0)
    for _ in range(400):  # the objective is linear: each estimate is (a.d) d whatever w is
        est.step(lambda backward=True: (a.view(2, 3) * w).sum())
        ests.append(w.grad.reshape(-1).clone())
    e = torch.stack(ests)
    mean, stderr = e.mean(0), e.std(0) / 20
    assert torch.all((mean - expected).abs() <= 5 * stderr)
    assert not torch.all((mean - a).abs() <= 5 * stderr)  # not the plain gradient: the test can tell


def test_estimator_directions_follow_the_chain_from_its_seeds() -> None:
    g = torch.tensor([0.3, -1.2, 0.8, 2.0], dtype=torch.float64)
    w = torch.zeros(4, dtype=torch.float64)
    est = tzb.RandomizedFDM([w], h=1e-2, distribution=tzb.AR1(0.8), seed=21)
    ref = make_sampler(tzb.AR1(0.8), "test")
    seeds = torch.Generator().manual_seed(21)
    for _ in range(5):
        est.step(lambda backward=True: g @ w)  # linear: central differences give (g.d) d exactly
        d = ref.draw(int(torch.randint(0, 2**62, (1,), generator=seeds).item()), [w])[0]
        torch.testing.assert_close(w.grad, (g @ d) * d, rtol=1e-9, atol=1e-12)


def _loss(w: torch.Tensor) -> torch.Tensor:
    return ((w - 1.0) ** 2).sum()


@pytest.mark.parametrize(
    "make",
    [
        lambda w, s: tzb.RandomizedFDM(
            [w], h=1e-2, distribution=tzb.Smoothed(), seed=s, opt=lambda p: torch.optim.SGD(p, lr=0.05)
        ),
        lambda w, s: tzb.RandomizedFDM(
            [w], h=1e-2, n_samples=2, distribution=tzb.AR1(0.9), seed=s, opt=lambda p: torch.optim.SGD(p, lr=0.05)
        ),
        lambda w, s: tzb.RandomGrad([w], lr=0.05, distribution=tzb.AR1(0.9, tzb.Smoothed()), best_of=2, seed=s),
        lambda w, s: tzb.ForwardGradient(
            [w], distribution=tzb.AR1(0.5), seed=s, opt=lambda p: torch.optim.SGD(p, lr=0.05)
        ),
        lambda w, s: tzb.RandomWalk([w], lr=0.1, order=2, distribution=tzb.AR1(0.8), seed=s),
        lambda w, s: tzb.AdaptiveOrderWalk([w], lr=0.1, distribution=tzb.AR1(0.8, tzb.Smoothed()), seed=s),
        lambda w, s: tzb.SecondOrderRandomWalk([w], lr=0.1, distribution=tzb.Smoothed(), seed=s),
    ],
    ids=[
        "RandomizedFDM-Smoothed",
        "RandomizedFDM-AR1",
        "RandomGrad",
        "ForwardGradient",
        "RandomWalk",
        "AdaptiveOrderWalk",
        "SORW",
    ],
)
def test_seeded_runs_repeat_and_state_round_trips_through_a_secure_load(make) -> None:
    def closure_for(w: torch.Tensor):
        def closure(backward: bool = True) -> torch.Tensor:
            loss = _loss(w)
            if backward and w.requires_grad:
                loss.backward()
            return loss

        return closure

    start = torch.linspace(-1.0, 2.0, 12, dtype=torch.float64).reshape(3, 4)
    w1 = start.clone().requires_grad_(True)
    a = make(w1, 5)
    for _ in range(4):
        a.step(closure_for(w1))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    w2 = w1.detach().clone().requires_grad_(True)
    for _ in range(5):
        a.step(closure_for(w1))
    b = make(w2, 77)  # another seed: everything must come from the state
    b.load_state_dict(saved)
    for _ in range(5):
        b.step(closure_for(w2))
    assert torch.equal(w1.detach(), w2.detach())

    w3 = start.clone().requires_grad_(True)
    c = make(w3, 5)
    for _ in range(9):
        c.step(closure_for(w3))
    assert torch.equal(w3.detach(), w1.detach())


def test_the_previous_direction_is_in_the_state() -> None:
    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    est = tzb.RandomizedFDM([w], h=1e-2, distribution=tzb.AR1(0.7), seed=2)
    est.step(lambda backward=True: _loss(w))
    text = repr(est.state_dict())
    assert "directions" in text
    walk = tzb.RandomWalk([torch.zeros(5, dtype=torch.float64)], distribution=tzb.AR1(0.7), seed=2)
    walk.step(lambda: 1.0)
    walk.step(lambda: 1.0)
    prev = walk.method_state["directions"]["prev"]
    assert torch.equal(prev[0], walk.sampler.prev[0])


def test_ar1_walk_moves_are_correlated_like_the_chain() -> None:
    count = iter(range(10**9))
    w = torch.zeros(200, dtype=torch.float64)
    opt = tzb.RandomWalk([w], lr=1.0, distribution=tzb.AR1(0.8), seed=0)
    moves, last = [], w.clone()
    for _ in range(300):
        opt.step(lambda: -float(next(count)))  # every move is kept: the move is the direction
        moves.append((w - last).numpy().copy())
        last = w.clone()
    m = np.stack(moves)
    lag1 = float((m[1:] * m[:-1]).mean() / (m**2).mean())
    assert lag1 == pytest.approx(0.8, abs=0.05)


def test_bad_specs_are_named() -> None:
    with pytest.raises(ValueError, match="rho"):
        tzb.AR1(1.0)
    with pytest.raises(ValueError, match="kernel"):
        tzb.Smoothed((0.0, 0.0))
    with pytest.raises(ValueError, match="distribution"):
        tzb.AR1(0.5, "cauchy")
    with pytest.raises(ValueError, match="AR1"):
        tzb.MeZO([torch.zeros(2)], distribution=tzb.AR1(0.5))
    with pytest.raises(ValueError, match="distribution"):
        tzb.RandomizedFDM([torch.zeros(2)], distribution=3)  # type: ignore[arg-type]


def test_an_added_param_group_starts_a_new_chain() -> None:
    w, v = torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    est = tzb.RandomizedFDM([w], h=1e-2, distribution=tzb.AR1(0.9), seed=0)
    est.step(lambda backward=True: (w**2).sum())
    est.add_param_group({"params": [v]})
    est.step(lambda backward=True: (w**2).sum() + (v**2).sum())
    assert [tuple(p.shape) for p in est.sampler.prev] == [(3,), (2,)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_smoothed_and_ar1_runs_repeat_and_resume() -> None:
    def run(steps: int, state=None):
        w = torch.linspace(-1.0, 1.0, 96, device="cuda").reshape(8, 12).requires_grad_(True)
        dist = tzb.AR1(0.8, tzb.Smoothed())
        est = tzb.RandomizedFDM([w], h=1e-2, distribution=dist, seed=3, opt=lambda p: torch.optim.SGD(p, lr=0.05))
        if state is not None:
            est.load_state_dict(state[0])
            with torch.no_grad():
                w.copy_(state[1])
        for _ in range(steps):
            est.step(lambda backward=True: ((w - 0.5) ** 2).sum())
        return w.detach().clone(), est.state_dict()

    a, _ = run(6)
    b, _ = run(6)
    assert torch.equal(a, b)
    mid, saved = run(3)
    c, _ = run(3, (saved, mid))
    assert torch.equal(a, c)
