"""NevergradWrapper against nevergrad run directly on the same numpy functions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import rosen

ng = pytest.importorskip("nevergrad")

import torchzero_bridge as tzb  # noqa: E402
from torchzero_bridge._nevergrad_compat import apply_guards, unwrap_scalar  # noqa: E402
from torchzero_bridge.errors import NonFiniteLossWarning  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:cma")


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - 1.0) ** 2))


def hand_loop(name: str, x0: np.ndarray, f, budget: int, seed: int, num_workers: int = 1):
    """nevergrad's own ask/tell loop: the independent truth."""
    apply_guards()  # the numpy>=2.4 MetaModel fix, needed by NGOpt here whoever drives it
    param = ng.p.Array(init=x0.copy())
    param.random_state = np.random.RandomState(seed)
    opt = ng.optimizers.registry[name](parametrization=param, budget=budget, num_workers=num_workers)
    asked = []
    done = 0
    while done < budget:
        cands = [opt.ask() for _ in range(min(num_workers, budget - done))]
        for c in cands:
            asked.append(c.value.copy())
            opt.tell(c, f(c.value))
        done += len(cands)
    return opt, np.array(asked)


def recording_closure(w: torch.Tensor, f, log: list):
    def closure(backward: bool = True) -> float:
        x = w.detach().numpy().copy()
        log.append(x)
        return f(x)

    return closure


@pytest.mark.parametrize("name", ["CMA", "TwoPointsDE", "NGOpt"])
def test_seeded_run_reproduces_hand_written_ask_tell_loop(name: str) -> None:
    x0 = np.array([-1.2, 1.0, 0.5])
    budget = 60
    ref, ref_asked = hand_loop(name, x0, rosen, budget, seed=3)
    w = torch.tensor(x0)
    log: list = []
    opt = tzb.NevergradWrapper([w], name, budget=budget, seed=3)
    loss = opt.step(recording_closure(w, rosen, log))
    np.testing.assert_array_equal(np.array(log[:budget]), ref_asked)
    rec = ref.recommend().value
    np.testing.assert_array_equal(opt.ng_optimizer.recommend().value, rec)
    # parameters: the better of the recommendation and the best evaluated point
    best_seen = min(rosen(a) for a in ref_asked)
    expect = rec if rosen(rec) <= best_seen else ref_asked[int(np.argmin([rosen(a) for a in ref_asked]))]
    np.testing.assert_array_equal(w.numpy(), expect)
    assert float(loss) == pytest.approx(min(rosen(rec), best_seen), rel=0, abs=0)


def test_unevaluated_recommendation_is_evaluated_once() -> None:
    """TBPSA recommends its mean, which nevergrad never evaluated: one extra closure run."""
    x0 = np.array([2.0, -1.0, 0.5, 0.0])
    ref, ref_asked = hand_loop("TBPSA", x0, sphere, 60, seed=0)
    rec = ref.recommend()
    assert rec.loss is None and not any(np.array_equal(rec.value, a) for a in ref_asked)
    w = torch.tensor(x0)
    log: list = []
    opt = tzb.NevergradWrapper([w], "TBPSA", budget=60, seed=0)
    opt.step(recording_closure(w, sphere, log))
    # 60 asks, the recommendation, and the start point (never asked by TBPSA; it competes once)
    assert opt.result.nfev == 61 and len(log) == 62  # nfev: the solver's evaluations, not the start check
    assert opt.result.start_evaluated
    np.testing.assert_array_equal(log[-2], rec.value)
    np.testing.assert_array_equal(log[-1], x0)
    best = min(sphere(a) for a in log)
    assert float(opt.result.fun) == best and sphere(w.numpy()) == best


def test_recommendation_already_evaluated_is_not_rerun() -> None:
    """CMA recommends pycma's best point as a fresh candidate without a loss; it was evaluated."""
    x0 = np.array([2.0, -1.0, 0.5, 0.0])
    ref, ref_asked = hand_loop("CMA", x0, sphere, 40, seed=0)
    rec = ref.recommend()
    assert rec.loss is None and any(np.array_equal(rec.value, a) for a in ref_asked)
    w = torch.tensor(x0)
    log: list = []
    opt = tzb.NevergradWrapper([w], "CMA", budget=40, seed=0)
    opt.step(recording_closure(w, sphere, log))
    # 40 asks (the recommendation among them) and the start point, which CMA never asks
    assert opt.result.nfev == 40 and len(log) == 41
    np.testing.assert_array_equal(log[-1], x0)
    np.testing.assert_array_equal(w.numpy(), rec.value)


@pytest.mark.parametrize("n", [2, 5])
def test_default_ngopt_reaches_sphere_minimum_and_params_are_the_recommendation(n: int) -> None:
    w = torch.zeros(n, dtype=torch.float64)
    opt = tzb.NevergradWrapper([w], budget=120, seed=0)
    loss = opt.step(lambda backward=True: sphere(w.numpy()))
    assert "MetaModel" in repr(opt.ng_optimizer.optim)  # the path numpy 2.4 breaks without the guard
    assert float(loss) < 1e-6
    np.testing.assert_allclose(w.numpy(), np.ones(n), atol=1e-3)
    np.testing.assert_array_equal(w.numpy(), opt.ng_optimizer.recommend().value)


@pytest.mark.parametrize("n", [3, 4])
def test_ngopt_reaches_rosenbrock_minimum(n: int) -> None:
    w = torch.full((n,), -1.0, dtype=torch.float64)
    opt = tzb.NevergradWrapper([w], budget=300 * n, seed=0)
    loss = opt.step(lambda backward=True: rosen(w.numpy()))
    assert float(loss) < 1e-6
    np.testing.assert_allclose(w.numpy(), np.ones(n), atol=2e-3)
    assert float(loss) == rosen(w.numpy())


def test_later_steps_continue_the_same_run() -> None:
    x0 = np.array([0.3, -0.7])
    _, ref_asked = hand_loop("OnePlusOne", x0, sphere, 60, seed=5)
    w = torch.tensor(x0)
    log: list = []
    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=60, evals_per_step=20, seed=5)
    closure = recording_closure(w, sphere, log)
    for _ in range(3):
        opt.step(closure)
    assert opt.ng_optimizer.num_tell == 60
    np.testing.assert_array_equal(np.array(log), ref_asked)


def test_state_dict_resumes_the_run_in_a_new_optimizer() -> None:
    x0 = np.array([1.5, -0.5, 2.0])
    _, ref_asked = hand_loop("CMA", x0, sphere, 60, seed=2)
    w = torch.tensor(x0)
    log: list = []
    opt = tzb.NevergradWrapper([w], "CMA", budget=60, evals_per_step=30, seed=2)
    opt.step(recording_closure(w, sphere, log))
    state = opt.state_dict()
    w2 = torch.tensor(x0)
    log2: list = []
    opt2 = tzb.NevergradWrapper([w2], "CMA", budget=60, evals_per_step=30)
    opt2.load_state_dict(state)
    opt2.step(recording_closure(w2, sphere, log2))
    # 30 asked points, the recommendation, then the next 30 asked points of the same run
    np.testing.assert_array_equal(np.array(log[:30] + log2[:30]), ref_asked)


def test_num_workers_asks_a_batch_and_evaluates_it_in_one_pass() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    X = torch.randn(40, 3, dtype=torch.float64)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.3

    def loss_fn(m, X, y):
        return ((m(X) - y) ** 2).mean()

    batch = tzb.BatchObjective(model, loss_fn, X, y)
    calls = []
    original = batch.evaluate

    def spy(flat, P):
        calls.append(len(P))
        return original(flat, P)

    batch.evaluate = spy  # type: ignore[method-assign]
    x0 = tzb.FlatParams(model.parameters()).read()

    def f(x):
        with torch.no_grad():
            m = torch.nn.Linear(3, 1).double()
            torch.nn.utils.vector_to_parameters(torch.from_numpy(x), m.parameters())
            return float(loss_fn(m, X, y))

    _, ref_asked = hand_loop("TwoPointsDE", x0, f, 64, seed=1, num_workers=8)
    opt = tzb.NevergradWrapper(model.parameters(), "TwoPointsDE", budget=64, num_workers=8, seed=1)
    opt.step(batch)
    assert calls == [8] * 8
    assert opt.ng_optimizer.num_tell == 64
    # same candidates as nevergrad's own loop with 8 workers
    assert opt.ng_optimizer.archive is not None
    told = {tuple(a) for a in ref_asked}
    assert tuple(opt.ng_optimizer.recommend().value) in told


def test_integer_and_boolean_tensors_round_trip() -> None:
    """Floats, integers and booleans: the documented parametrization, values mapped back exactly."""
    w0, k0, b0 = np.array([0.5, -1.0]), np.array([0, 0, 0]), np.array([False, False, True, True])
    target_k, target_b = np.array([3, -2, 1]), np.array([True, False, True, False])

    def f(w, k, b):
        return float(((k - target_k) ** 2).sum() + (b != target_b).sum() + ((w - 0.25) ** 2).sum())

    parts = [ng.p.Array(init=w0.copy()), ng.p.Array(init=k0.astype(float))]
    for part in parts:
        part.set_mutation(sigma=8.0 / 6.0)
        part.set_bounds(lower=np.full(part.dimension, -4.0), upper=np.full(part.dimension, 4.0))
    parts[1].set_integer_casting()
    choice = ng.p.Choice([False, True], repetitions=4)
    choice.value = tuple(b0.tolist())
    param = ng.p.Tuple(*parts, choice)
    param.random_state = np.random.RandomState(4)
    ref = ng.optimizers.registry["OnePlusOne"](parametrization=param, budget=120)
    ref_log = []
    for _ in range(120):
        c = ref.ask()
        w_, k_, b_ = c.value
        ref_log.append(np.concatenate([w_, k_, np.asarray(b_, dtype=float)]))
        ref.tell(c, f(w_, k_, np.asarray(b_)))

    w, k, b = torch.tensor(w0), torch.tensor(k0, dtype=torch.int64), torch.tensor(b0)
    log, dtypes = [], set()

    def closure(backward=True):
        dtypes.add((w.dtype, k.dtype, b.dtype))
        log.append(np.concatenate([w.numpy(), k.numpy(), b.numpy()]).astype(float))
        return f(w.numpy(), k.numpy(), b.numpy())

    opt = tzb.NevergradWrapper([{"params": [w, k, b], "bounds": (-4, 4)}], "OnePlusOne", budget=120, seed=4)
    opt.step(closure)
    assert dtypes == {(torch.float64, torch.int64, torch.bool)}
    np.testing.assert_array_equal(np.array(log[:120]), np.array(ref_log))
    # the first ask draws the booleans, so the start itself was never asked: it competes once, last
    assert len(log) == 121
    np.testing.assert_array_equal(log[-1], np.concatenate([w0, k0, b0]).astype(float))
    rec_w, rec_k, rec_b = ref.recommend().value
    assert k.tolist() == rec_k.tolist() and b.tolist() == list(rec_b)
    np.testing.assert_array_equal(w.numpy(), rec_w)


def test_integer_tensors_of_other_dtypes_stay_integral() -> None:
    k = torch.tensor([5, -5], dtype=torch.int32)
    w = torch.zeros(2, dtype=torch.float32)
    seen = []

    def closure(backward=True):
        seen.append(k.clone())
        return float(((k.double() - 2) ** 2).sum() + (w.double() ** 2).sum())

    opt = tzb.NevergradWrapper([{"params": [k, w], "bounds": (-6, 6)}], "OnePlusOne", budget=60, seed=0)
    opt.step(closure)
    assert k.dtype == torch.int32 and w.dtype == torch.float32
    assert all(v.dtype == torch.int32 and int(v.abs().max()) <= 6 for v in seen)
    assert opt.result.fun == min(float(((v.double() - 2) ** 2).sum()) for v in seen) or opt.result.fun < 1.0


def test_bounds_and_sigma_shape_the_parametrization() -> None:
    a = torch.zeros(3, dtype=torch.float64)
    c = torch.zeros(2, dtype=torch.float64)
    groups = [{"params": [a], "bounds": (-0.5, 1.0)}, {"params": [c], "sigma": 0.1}]
    log = []

    def closure(backward=True):
        log.append(a.numpy().copy())
        return sphere(np.concatenate([a.numpy(), c.numpy()]))

    opt = tzb.NevergradWrapper(groups, "OnePlusOne", budget=50, seed=0)
    opt.step(closure)
    arr = np.array(log)
    assert arr.min() >= -0.5 and arr.max() <= 1.0
    sigma = opt.ng_optimizer.parametrization.sigma.value
    np.testing.assert_allclose(sigma, [0.25, 0.25, 0.25, 0.1, 0.1])  # (hi - lo) / 6 where bounded


def test_nonfinite_losses_are_told_clipped_and_never_written() -> None:
    w = torch.tensor([0.5, 0.5], dtype=torch.float64)

    def closure(backward=True):
        x = w.numpy()
        return float("nan") if x[0] < 0.4 else sphere(x)

    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=80, seed=0)
    with pytest.warns(NonFiniteLossWarning):
        loss = opt.step(closure)
    assert opt.result.n_nonfinite > 0
    assert w[0] >= 0.4 and np.isfinite(float(loss))
    assert max(mv.mean for mv in opt.ng_optimizer.archive.values()) == 5.0e20


def test_all_nonfinite_leaves_the_start() -> None:
    w = torch.tensor([0.5, 0.5], dtype=torch.float64)
    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=10, seed=0)
    with pytest.warns(NonFiniteLossWarning):
        opt.step(lambda backward=True: float("inf"))
    assert w.tolist() == [0.5, 0.5] and not opt.result.success


def test_callback_stop_keeps_best_and_the_run_continues() -> None:
    w = torch.tensor([2.0, 2.0], dtype=torch.float64)
    log: list = []
    rounds = []

    def cb(res):
        rounds.append(res.nit)
        return res.nit >= 7

    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=40, seed=0, callback=cb)
    opt.step(recording_closure(w, sphere, log))
    assert not opt.result.success and "callback" in opt.result.message
    assert len(log) == 7 and opt.ng_optimizer.num_tell == 7
    assert sphere(w.numpy()) == min(sphere(x) for x in log)
    opt.callback = None
    opt.step(recording_closure(w, sphere, log))
    assert opt.ng_optimizer.num_tell == 47


def test_closure_error_restores_best_and_unfinished_round_is_retold() -> None:
    w = torch.tensor([2.0, 2.0], dtype=torch.float64)
    calls = []

    def closure(backward=True):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("boom")
        return sphere(w.numpy())

    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=20, seed=0)
    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    assert opt.ng_optimizer.num_tell == 5 and len(opt._pending) == 1
    opt.step(closure)
    assert opt.ng_optimizer.num_tell == 25 and opt.ng_optimizer.num_ask == 25


def test_bad_arguments_give_clear_errors() -> None:
    w = torch.zeros(2)
    with pytest.raises(ValueError, match=r"did you mean 'CMA'"):
        tzb.NevergradWrapper([w], "CMAA", budget=10)
    with pytest.raises(ValueError, match="budget expected an int >= 1, got 0"):
        tzb.NevergradWrapper([w], budget=0)
    with pytest.raises(TypeError, match="budget"):
        tzb.NevergradWrapper([w])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="evals_per_step"):
        tzb.NevergradWrapper([w], budget=5, evals_per_step=-1)
    with pytest.raises(ValueError, match="num_workers"):
        tzb.NevergradWrapper([w], budget=5, num_workers=0)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['sigma'\]"):
        tzb.NevergradWrapper([{"params": [w], "sigma": -1.0}], budget=5)
    with pytest.raises(TypeError, match="already built"):
        tzb.NevergradWrapper([w], ng.optimizers.OnePlusOne(parametrization=2, budget=5), budget=5)
    # a class and a configured family are accepted
    assert isinstance(ng.optimizers.NGOpt, type)
    assert tzb.NevergradWrapper([w], ng.optimizers.NGOpt, budget=5).optimizer_name == "NGOpt"
    opt = tzb.NevergradWrapper([w], ng.families.ParametrizedCMA(popsize=6), budget=12, seed=0)
    opt.step(lambda backward=True: float((w.double() ** 2).sum()))
    assert opt.ng_optimizer.num_tell == 12


def test_numpy_scalar_shim() -> None:
    assert unwrap_scalar(np.array([[2.5]])) == 2.5 and unwrap_scalar(3) == 3.0
    with pytest.raises(TypeError):
        unwrap_scalar(np.array([1.0, 2.0]))


def _run_script(body: str, timeout: float) -> subprocess.CompletedProcess:
    script = "import warnings; warnings.simplefilter('ignore')\n" + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )


def test_default_optimizer_runs_to_completion_in_a_fresh_interpreter() -> None:
    """NGOpt's MetaModel path on this numpy: no crash, no thread left blocking exit."""
    proc = _run_script(
        """
        import numpy as np, torch, torchzero_bridge as tzb
        w = torch.zeros(2, dtype=torch.float64)
        opt = tzb.NevergradWrapper([w], budget=60, seed=0)
        loss = opt.step(lambda backward=True: float(((w.numpy() - 1) ** 2).sum()))
        print(type(opt.ng_optimizer.optim).__name__, float(loss))
        """,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, loss = proc.stdout.split()
    assert "MetaModel" in name and float(loss) < 1e-6


def test_unfinished_recast_run_does_not_block_exit() -> None:
    """Powell runs scipy in a waiting thread; a half-spent budget must not hang the interpreter."""
    proc = _run_script(
        """
        import torch, torchzero_bridge as tzb
        w = torch.zeros(3, dtype=torch.float64)
        opt = tzb.NevergradWrapper([w], "Powell", budget=100, evals_per_step=5)
        opt.step(lambda backward=True: float(((w - 1) ** 2).sum()))
        print("stepped")
        """,
        timeout=60,
    )
    assert proc.returncode == 0 and "stepped" in proc.stdout, proc.stderr[-2000:]


def test_progress_bar_counts_evaluations(capsys: pytest.CaptureFixture[str]) -> None:
    w = torch.zeros(2, dtype=torch.float64)
    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=15, seed=0, progress=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.step(lambda backward=True: sphere(w.numpy()))
    assert "15" in capsys.readouterr().err


def rastrigin_np(x: np.ndarray) -> float:
    return float(10 * x.size + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


def test_steps_never_end_worse_than_they_started_tbpsa_rastrigin() -> None:
    """Five steps of 60: each returns the best loss of the whole life so far, from nevergrad's own loop."""
    x0 = np.array([2.3, -1.7, 0.9, 3.1])
    param = ng.p.Array(init=x0.copy())
    param.random_state = np.random.RandomState(7)
    ref = ng.optimizers.registry["TBPSA"](parametrization=param, budget=60)
    best, expected = rastrigin_np(x0), []
    for _ in range(5):  # the wrapper's sequence: 60 asks/tells, then one recommendation per step
        for _ in range(60):
            c = ref.ask()
            f = rastrigin_np(c.value)
            ref.tell(c, f)
            best = min(best, f)
        rec = ref.provide_recommendation()
        best = min(best, rastrigin_np(rec.value) if rec.loss is None else rec.loss)
        expected.append(best)
    w = torch.tensor(x0)
    opt = tzb.NevergradWrapper([w], "TBPSA", budget=60, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nevergrad warns that the budget is spent after the first step
        losses = [float(opt.step(lambda backward=True: rastrigin_np(w.numpy()))) for _ in range(5)]
    assert losses == expected
    assert losses == sorted(losses, reverse=True)
    assert rastrigin_np(w.numpy()) == losses[-1]
    assert float(opt.state_dict()["torchzero_bridge"]["state"]["best"]["f"]) == losses[-1]


def test_start_point_wins_when_nothing_beats_it() -> None:
    """Starting at the minimum, which random search never asks: the parameters stay at the start."""
    w = torch.ones(3, dtype=torch.float64)
    log: list = []
    opt = tzb.NevergradWrapper([w], "RandomSearch", budget=20, seed=0)
    loss = opt.step(recording_closure(w, sphere, log))
    assert min(sphere(x) for x in log[:20]) > 0  # no asked point is the minimum
    np.testing.assert_array_equal(log[-1], np.ones(3))  # the start, evaluated once after the run
    assert float(loss) == 0.0 and w.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("name", ["OnePlusOne", "CMA", "TBPSA", "DE", "PSO", "NGOpt", "Powell", "Cobyla"])
def test_checkpoint_replay_gives_the_uninterrupted_next_asks(name: str) -> None:
    """Loading rebuilds the run from the seed and its history: the next asks equal an uninterrupted run's."""
    x0 = np.array([0.4, -0.3, 1.1])

    def run(steps: int, w: torch.Tensor, opt: tzb.NevergradWrapper) -> list[np.ndarray]:
        log: list = []
        for _ in range(steps):
            opt.step(recording_closure(w, sphere, log))
        return log

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w1 = torch.tensor(x0)
        full = tzb.NevergradWrapper([w1], name, budget=60, evals_per_step=10, seed=11)
        run(2, w1, full)
        state = full.state_dict()
        w2 = w1.clone()  # the model's weights travel separately (model.state_dict())
        after = run(2, w1, full)
        resumed = tzb.NevergradWrapper([w2], name, budget=60, evals_per_step=10)
        resumed.load_state_dict(state)
        again = run(2, w2, resumed)
    np.testing.assert_array_equal(np.array(again), np.array(after))
    assert torch.equal(w1, w2)


def test_replay_that_diverges_is_a_clear_error() -> None:
    w = torch.zeros(2, dtype=torch.float64)
    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=20, seed=1)
    opt.step(lambda backward=True: sphere(w.numpy()))
    state = opt.state_dict()
    state["torchzero_bridge"]["state"]["nevergrad"]["seed"] = 2  # another seed: the first random ask differs
    with pytest.raises(RuntimeError, match="does not replay deterministically"):
        tzb.NevergradWrapper([w], "OnePlusOne", budget=20).load_state_dict(state)


def test_asks_outside_the_wrapper_make_state_dict_refuse() -> None:
    w = torch.zeros(2, dtype=torch.float64)
    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=20, seed=1)
    opt.step(lambda backward=True: sphere(w.numpy()))
    opt.ng_optimizer.ask()
    with pytest.raises(RuntimeError, match="asked or told through ng_optimizer"):
        opt.state_dict()


def test_state_without_seed_still_replays() -> None:
    """seed=None: a seed is drawn at the first step and saved, so the run can be rebuilt."""
    w = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt = tzb.NevergradWrapper([w], "CMA", budget=40, evals_per_step=10)
    opt.step(lambda backward=True: sphere(w.numpy()))
    state = opt.state_dict()
    assert isinstance(state["torchzero_bridge"]["state"]["nevergrad"]["seed"], int)
    w2 = w.clone()
    other = tzb.NevergradWrapper([w2], "CMA", budget=40, evals_per_step=10)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.ng_optimizer.ask().value, opt.ng_optimizer.ask().value)


def test_checkpoint_after_an_interrupted_round_keeps_the_pending_candidate() -> None:
    """A candidate asked but not told (the closure raised) is re-evaluated first after loading too."""

    class Stop(Exception):
        pass

    def interrupted() -> tuple[tzb.NevergradWrapper, torch.Tensor]:
        w = torch.tensor([0.5, -0.5], dtype=torch.float64)
        opt = tzb.NevergradWrapper([w], "CMA", budget=40, evals_per_step=10, seed=9)
        calls = [0]

        def closure(backward: bool = True) -> float:
            calls[0] += 1
            if calls[0] == 5:
                raise Stop
            return sphere(w.numpy())

        with pytest.raises(Stop):
            opt.step(closure)
        return opt, w

    live, w1 = interrupted()
    saved, w_saved = interrupted()
    state = saved.state_dict()
    w2 = w_saved.clone()
    resumed = tzb.NevergradWrapper([w2], "CMA", budget=40, evals_per_step=10)
    resumed.load_state_dict(state)
    assert len(resumed._pending) == 1
    np.testing.assert_array_equal(resumed._pending[0].value, live._pending[0].value)
    log1: list = []
    log2: list = []
    live.step(recording_closure(w1, sphere, log1))
    resumed.step(recording_closure(w2, sphere, log2))
    np.testing.assert_array_equal(np.array(log2), np.array(log1))
    assert torch.equal(w1, w2)
