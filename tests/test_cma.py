"""CMAESWrapper against pycma itself: a hand-written ask/tell loop, cma.fmin's restarts, bounds, integers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb

cma = pytest.importorskip("cma")

QUIET = {"verbose": -9, "verb_log": 0, "verb_disp": 0, "signals_filename": ""}
TARGET = np.array([0.7, -1.3, 0.2, 2.0])


def _f(x: np.ndarray) -> float:
    """Shifted ellipsoid (numpy side of the same loss as ``_closure``)."""
    w = np.arange(1, 5, dtype=np.float64)
    return float((w * (x - TARGET) ** 2).sum())


def _closure(p: torch.Tensor, log: list[np.ndarray]):
    t = torch.tensor(TARGET)
    w = torch.arange(1, 5, dtype=torch.float64)

    def closure(backward: bool = True) -> torch.Tensor:
        log.append(p.detach().numpy().copy())
        return (w * (p - t) ** 2).sum()

    return closure


def _trials(log: list[np.ndarray], x0: np.ndarray) -> np.ndarray:
    """The evaluated points without the start point (evaluated once after the first step, to compete)."""
    return np.stack([x for x in log if not np.array_equal(x, x0)])


def _hand_loop(x0: np.ndarray, sigma0: float, opts: dict, budget: int) -> tuple[cma.CMAEvolutionStrategy, list]:
    es = cma.CMAEvolutionStrategy(x0, sigma0, {**opts, **QUIET})
    seen = []
    while es.countevals < budget:
        X = es.ask()
        seen.extend(np.array(x) for x in X)
        es.tell(X, [_f(x) for x in X])
    return es, seen


def test_reproduces_a_hand_written_ask_tell_loop() -> None:
    x0 = np.array([0.0, 0.5, -0.5, 1.0])
    es, seen = _hand_loop(x0, 0.4, {"seed": 7}, budget=96)  # popsize 8: 12 generations
    p = torch.tensor(x0.copy())
    log: list[np.ndarray] = []
    opt = tzb.CMAESWrapper([p], 0.4, budget=96, seed=7)
    loss = opt.step(_closure(p, log))
    assert opt.result.start_evaluated and np.array_equal(log[-1], x0)
    assert len(log) - 1 == es.countevals == opt.result.nfev == 96
    np.testing.assert_array_equal(np.stack(log[:-1]), np.stack(seen))
    np.testing.assert_array_equal(p.numpy(), es.result.xbest)
    assert float(loss) == es.result.fbest
    np.testing.assert_array_equal(opt.es.mean, es.mean)  # the strategies agree too, not only the samples
    assert opt.result.nit == 12


def test_steps_split_the_budget_mid_generation_without_changing_the_run() -> None:
    """Five steps of 13 evaluations sample what one step of 65 samples (generations of 8 cut across steps)."""
    x0 = np.array([0.0, 0.5, -0.5, 1.0])
    one: list[np.ndarray] = []
    p = torch.tensor(x0.copy())
    tzb.CMAESWrapper([p], 0.4, budget=65, seed=3).step(_closure(p, one))
    many: list[np.ndarray] = []
    q = torch.tensor(x0.copy())
    opt = tzb.CMAESWrapper([q], 0.4, budget=13, seed=3)
    for _ in range(5):
        opt.step(_closure(q, many))
    assert len(one) == len(many) == 66
    np.testing.assert_array_equal(_trials(one, x0), _trials(many, x0))
    np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_restarts_match_cma_fmin_ipop() -> None:
    """Each run is cut after 4 iterations; two IPOP restarts double the population as cma.fmin does."""
    x0 = np.array([0.0, 0.5, -0.5, 1.0])
    opts = {"seed": 11, "maxiter": 4, "eval_final_mean": False}
    fmin_seen: list[np.ndarray] = []

    def f(x: np.ndarray) -> float:
        fmin_seen.append(np.array(x))
        return _f(x)

    res = cma.fmin(f, x0, 0.4, {**opts, **QUIET}, restarts=2, incpopsize=2)
    p = torch.tensor(x0.copy())
    log: list[np.ndarray] = []
    opt = tzb.CMAESWrapper([p], 0.4, budget=10_000, seed=11, restarts=2, options={"maxiter": 4})
    loss = opt.step(_closure(p, log))
    assert len(_trials(log, x0)) == res[3] == 4 * (8 + 16 + 32)  # cma.fmin's evaluation count
    np.testing.assert_array_equal(_trials(log, x0), np.stack(fmin_seen))
    best = int(np.argmin([_f(x) for x in fmin_seen]))  # over all runs (cma.fmin's res[0] is the last run's)
    np.testing.assert_array_equal(p.numpy(), fmin_seen[best])
    assert float(loss) == _f(fmin_seen[best])
    assert opt.es.popsize == 32 and "maxiter" in opt.result.message
    assert opt.result.success
    again = opt.step(_closure(p, log))  # restarts used up: nothing more is evaluated
    assert len(_trials(log, x0)) == 4 * 56 and float(again) == float(loss) and opt.result.nfev == 0


def test_bounds_and_integers_are_respected() -> None:
    x = torch.zeros(2, dtype=torch.float64)
    k = torch.zeros(2, dtype=torch.int64)
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def closure(backward: bool = True) -> torch.Tensor:
        seen.append((x.numpy().copy(), k.numpy().copy()))
        return ((x - 2.0) ** 2).sum() + ((k.double() - torch.tensor([2.6, -4.2])) ** 2).sum()

    opt = tzb.CMAESWrapper([{"params": [x], "bounds": (-1.0, 0.5)}, {"params": [k]}], 1.0, budget=400, seed=4)
    opt.step(closure)
    xs = np.stack([s[0] for s in seen])
    ks = np.stack([s[1] for s in seen])
    assert xs.min() >= -1.0 and xs.max() <= 0.5
    assert (xs == 0.5).sum() < len(xs)  # not a clip onto the boundary
    assert k.dtype == torch.int64 and k.tolist() == [3, -4]
    assert np.allclose(x.numpy(), 0.5, atol=1e-3)
    assert opt.es.opts["integer_variables"] == [2, 3]
    assert len({tuple(r) for r in ks}) > 5  # the integers were searched, not frozen


def test_group_sigma_becomes_cma_stds() -> None:
    """A group's sigma is cma's CMA_stds = sigma / sigma0 on its entries: same samples as cma given that option."""
    x0 = np.array([0.0, 0.5, -0.5, 1.0])
    stds = np.array([1.0, 1.0, 0.01, 0.01])
    _es, seen = _hand_loop(x0, 0.4, {"seed": 8, "CMA_stds": stds}, budget=16)
    a, b = torch.tensor(x0[:2].copy()), torch.tensor(x0[2:].copy())
    log: list[np.ndarray] = []

    def closure(backward: bool = True) -> torch.Tensor:
        x = torch.cat([a, b])
        log.append(x.numpy().copy())
        return torch.tensor(_f(x.numpy()), dtype=torch.float64)

    opt = tzb.CMAESWrapper([{"params": [a]}, {"params": [b], "sigma": 0.004}], 0.4, budget=16, seed=8)
    opt.step(closure)
    np.testing.assert_array_equal(_trials(log, x0), np.stack(seen))
    first = np.stack(seen[:8])
    assert first[:, 2:].std(axis=0).max() < 0.05 < first[:, :2].std(axis=0).min()  # 100 times less spread
    with pytest.raises(ValueError, match="CMA_stds"):
        tzb.CMAESWrapper([{"params": [a], "sigma": 0.1}], 0.4, budget=8, options={"CMA_stds": [1.0, 1.0]})
    with pytest.raises(ValueError, match="sigma"):
        tzb.CMAESWrapper([{"params": [a], "sigma": -0.1}], 0.4, budget=8)


def test_batch_objective_evaluates_the_same_points() -> None:
    torch.manual_seed(0)
    X, y = torch.randn(32, 3), torch.randn(32, 1)

    def loss(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(X), y)

    def run(batched: bool) -> tuple[list[float], torch.Tensor]:
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 1).double()
        opt = tzb.CMAESWrapper(model.parameters(), 0.3, budget=40, seed=9)
        closure = tzb.BatchObjective(model, loss, X.double(), y.double()) if batched else None
        if closure is None:

            def closure(backward: bool = True) -> torch.Tensor:
                return loss(model, X.double(), y.double())

        out = [float(opt.step(closure)) for _ in range(3)]
        return out, torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    plain, pp = run(False)
    batched, pb = run(True)
    np.testing.assert_allclose(batched, plain, rtol=1e-12)
    torch.testing.assert_close(pb, pp, rtol=1e-12, atol=1e-12)


def test_checkpoint_mid_generation_resumes_identically() -> None:
    x0 = np.array([0.0, 0.5, -0.5, 1.0])
    ref: list[np.ndarray] = []
    p = torch.tensor(x0.copy())
    full = tzb.CMAESWrapper([p], 0.4, budget=13, seed=5)
    for _ in range(4):
        full.step(_closure(p, ref))
    q = torch.tensor(x0.copy())
    first: list[np.ndarray] = []
    a = tzb.CMAESWrapper([q], 0.4, budget=13, seed=5)
    for _ in range(2):
        a.step(_closure(q, first))
    sd = a.state_dict()
    assert len(sd["torchzero_bridge"]["state"]["cma"]["pending_f"]) == 26 % 8
    b = tzb.CMAESWrapper([q], 0.4, budget=13)  # no seed: it comes from the state
    b.load_state_dict(sd)
    rest: list[np.ndarray] = []
    for _ in range(2):
        b.step(_closure(q, rest))
    np.testing.assert_array_equal(_trials(first + rest, x0), _trials(ref, x0))
    np.testing.assert_array_equal(q.numpy(), p.numpy())
    c = tzb.CMAESWrapper([q], 0.4, budget=13, popsize=9)  # another popsize: the replay does not match
    with pytest.raises(RuntimeError, match="same options, popsize"):
        c.load_state_dict(sd)


def test_error_mid_generation_keeps_the_paid_losses() -> None:
    """A closure error leaves the best point; the next step finishes the same generation."""
    x0 = np.array([0.0, 0.5, -0.5, 1.0])
    ref: list[np.ndarray] = []
    p = torch.tensor(x0.copy())
    tzb.CMAESWrapper([p], 0.4, budget=30, seed=2).step(_closure(p, ref))
    q = torch.tensor(x0.copy())
    log: list[np.ndarray] = []
    inner = _closure(q, log)
    calls = [0]

    def flaky(backward: bool = True) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 12:
            raise RuntimeError("boom")
        return inner(backward)

    opt = tzb.CMAESWrapper([q], 0.4, budget=30, seed=2)
    with pytest.raises(RuntimeError, match="boom"):
        opt.step(flaky)
    fs = [_f(x) for x in log]
    np.testing.assert_array_equal(q.numpy(), log[int(np.argmin(fs))])
    opt.step(flaky)  # 30 more: the 19 left of the first budget's points, then 11 beyond it
    np.testing.assert_array_equal(_trials(log, x0)[:30], _trials(ref, x0))


def test_numpy_global_random_state_is_left_alone() -> None:
    p = torch.zeros(3, dtype=torch.float64)
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    tzb.CMAESWrapper([p], 0.5, budget=20, seed=1).step(lambda backward=True: (p**2).sum())
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_closure_using_numpy_random_does_not_change_the_samples() -> None:
    x0 = np.array([0.0, 0.5, -0.5, 1.0])
    runs = []
    for noisy in (False, True):
        p = torch.tensor(x0.copy())
        log: list[np.ndarray] = []
        inner = _closure(p, log)

        def closure(backward: bool = True, inner=inner, noisy=noisy) -> torch.Tensor:
            if noisy:
                np.random.rand(5)
            return inner(backward)

        tzb.CMAESWrapper([p], 0.4, budget=24, seed=6).step(closure)
        runs.append(_trials(log, x0))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_construction_errors_name_the_option() -> None:
    p = torch.zeros(2)
    with pytest.raises(ValueError, match="close matches: \\['tolfun'"):
        tzb.CMAESWrapper([p], 0.5, budget=10, options={"tolfunn": 1e-3})
    with pytest.raises(ValueError, match=r"options\['bounds'\].*bounds=\(lo, hi\)"):
        tzb.CMAESWrapper([p], 0.5, budget=10, options={"bounds": [0, 1]})
    with pytest.raises(ValueError, match="sigma0"):
        tzb.CMAESWrapper([p], -1.0, budget=10)
    with pytest.raises(ValueError, match="budget"):
        tzb.CMAESWrapper([p], 0.5, budget=0)
    with pytest.raises(ValueError, match="incpopsize"):
        tzb.CMAESWrapper([p], 0.5, budget=10, incpopsize=1.0)
    with pytest.raises(ValueError, match="popsize"):
        tzb.CMAESWrapper([p], 0.5, budget=10, popsize=1)
    with pytest.raises(ValueError, match="seed"):
        tzb.CMAESWrapper([p], 0.5, budget=10, seed=0)


def test_importing_the_package_does_not_import_cma() -> None:
    code = "import sys, torchzero_bridge; print('cma' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
