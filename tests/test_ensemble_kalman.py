"""EnsembleKalmanInversion against independent truth: numpy's least squares and a hand-written Kalman update."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb


def _problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(30, 5))
    y = A @ rng.normal(size=5) + 0.3 * rng.normal(size=30)  # inconsistent: the residual is not zero
    return A, y, np.linalg.lstsq(A, y, rcond=None)[0]


def _eki(w: torch.Tensor, A: np.ndarray, y: np.ndarray, **kw: Any) -> tzb.EnsembleKalmanInversion:
    At, yt = torch.tensor(A), torch.tensor(y)
    return tzb.EnsembleKalmanInversion([w], n_particles=12, forward=lambda: At @ w, target=yt, seed=0, **kw)


def test_ensemble_mean_converges_to_the_least_squares_solution() -> None:
    A, y, solution = _problem()
    w = torch.zeros(5, dtype=torch.float64)
    opt = _eki(w, A, y, step_size=100.0)
    errors = []
    for t in range(200):
        opt.step()
        if t + 1 in (50, 200):
            assert opt.ensemble_mean is not None
            errors.append(float(np.abs(opt.ensemble_mean.numpy() - solution).max()))
    assert errors[1] < 2e-3 and errors[1] < errors[0], errors
    # the parameters hold the best particle seen; its misfit is the least-squares one up to the same tolerance
    best = 0.5 * float(((y - A @ w.numpy()) ** 2).sum())
    assert best == pytest.approx(0.5 * float(((y - A @ solution) ** 2).sum()), rel=1e-4)
    assert opt.nfev == 200 * 12


def test_perturbed_observations_converge_near_the_least_squares_solution() -> None:
    A, y, solution = _problem(1)
    w = torch.zeros(5, dtype=torch.float64)
    opt = _eki(w, A, y, randomize="step")
    for _ in range(100):
        opt.step()
    assert opt.ensemble_mean is not None
    assert float(np.abs(opt.ensemble_mean.numpy() - solution).max()) < 0.05


@pytest.mark.parametrize(("randomize", "full"), [(None, True), ("step", True), (None, False), ("step", False)])
def test_one_step_is_the_kalman_update_written_out(randomize: str | None, full: bool) -> None:
    A, y, _ = _problem(2)
    # a full symmetric positive definite noise, or a diagonal one (30 predictions > 7 particles: the Woodbury path)
    gamma = np.diag(np.linspace(0.5, 2.0, 30)) + (0.1 if full else 0.0)
    w = torch.zeros(5, dtype=torch.float64)
    At, yt = torch.tensor(A), torch.tensor(y)
    h = 3.0
    opt = tzb.EnsembleKalmanInversion(
        [w],
        7,
        forward=lambda: At @ w,
        target=yt,
        noise=torch.tensor(gamma if full else np.diag(gamma).copy()),
        step_size=h,
        randomize=randomize,
        seed=4,
    )
    opt.step()
    assert opt.ensemble is not None
    theta = opt.ensemble.numpy().copy()  # the ensemble the next step evaluates and moves
    gen = torch.Generator().set_state(opt.rng.get("cpu").get_state())
    opt.step()
    Y = np.tile(y, (7, 1))
    if randomize == "step":  # perturbed observations, eta ~ N(0, Gamma / h)
        z = torch.randn((7, 30), generator=gen, dtype=torch.float64).numpy()
        Y = Y + z @ np.linalg.cholesky(gamma).T / np.sqrt(h)
    G = theta @ A.T
    dt, dg = theta - theta.mean(0), G - G.mean(0)
    c_tg, c_gg = dt.T @ dg / 7, dg.T @ dg / 7
    expected = theta + h * (c_tg @ np.linalg.solve(h * c_gg + gamma, (Y - G).T)).T
    np.testing.assert_allclose(opt.ensemble.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_epoch_variant_draws_the_ensemble_afresh_around_its_mean_at_each_epoch_end() -> None:
    w = torch.tensor([3.0, -2.0], dtype=torch.float64)
    opt = tzb.EnsembleKalmanInversion(
        [w],
        400,
        forward=lambda: w,
        target=torch.zeros(2),
        step_size=10.0,
        randomize="epoch",
        epoch_steps=4,
        init_std=0.5,
    )
    spreads = []
    for _ in range(8):
        opt.step()
        assert opt.ensemble is not None
        spreads.append(float(opt.ensemble.std(0).mean()))
    # the Kalman update contracts the ensemble; steps 4 and 8 end an epoch and restore the spread init_std
    assert spreads[2] < 0.15 and spreads[6] < 0.15, spreads
    assert abs(spreads[3] - 0.5) < 0.04 and abs(spreads[7] - 0.5) < 0.04, spreads


def test_same_seed_same_run_other_seed_other_run() -> None:
    def run(seed: int) -> torch.Tensor:
        w = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
        opt = tzb.EnsembleKalmanInversion([w], n_particles=6, randomize="step", seed=seed)
        for _ in range(5):
            opt.step(lambda: ((w - 0.5) ** 2).sum())
        assert opt.ensemble is not None
        return opt.ensemble.clone()

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_state_dict_round_trip_in_the_vector_form() -> None:
    A, y, _ = _problem(3)

    def fresh() -> tuple[torch.Tensor, tzb.EnsembleKalmanInversion]:
        w = torch.zeros(5, dtype=torch.float64)
        return w, _eki(w, A, y, randomize="step", step_size=5.0)

    w, opt = fresh()
    for _ in range(3):
        opt.step()
    buffer = io.BytesIO()
    torch.save({"w": w.clone(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    expected = [float(opt.step()) for _ in range(3)]
    assert opt.ensemble is not None
    w2, opt2 = fresh()
    w2.copy_(saved["w"])
    opt2.load_state_dict(saved["opt"])
    assert [float(opt2.step()) for _ in range(3)] == expected
    assert opt2.ensemble is not None and torch.equal(opt2.ensemble, opt.ensemble)
    assert torch.equal(w2, w)


def test_bad_options_are_refused_by_name() -> None:
    w = torch.zeros(2)
    with pytest.raises(ValueError, match="randomize"):
        tzb.EnsembleKalmanInversion([w], randomize="always")
    with pytest.raises(ValueError, match="noise"):
        tzb.EnsembleKalmanInversion([w], noise=torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="n_particles"):
        tzb.EnsembleKalmanInversion([w], n_particles=1)
    with pytest.raises(TypeError, match="forward"):
        tzb.EnsembleKalmanInversion([w], forward=3)  # type: ignore[arg-type]
    with pytest.warns(tzb.IgnoredOptionWarning, match="epoch_steps"):
        tzb.EnsembleKalmanInversion([w], epoch_steps=3)
    opt = tzb.EnsembleKalmanInversion([w], forward=lambda: w * 2, target=torch.ones(2))
    with pytest.raises(TypeError, match="no closure"):
        opt.step(lambda: w.sum())
    bad = tzb.EnsembleKalmanInversion([w], forward=lambda: w * 2, target=torch.ones(3))
    with pytest.raises(ValueError, match="target"):
        bad.step()
    with pytest.raises(ValueError, match="noise"):
        tzb.EnsembleKalmanInversion([w], forward=lambda: w * 2, target=torch.ones(2), noise=torch.ones(3)).step()
    with pytest.raises(ValueError, match="executor"):
        tzb.EnsembleKalmanInversion([w], forward=lambda: w, executor=ThreadPoolExecutor(1))
