"""OptunaWrapper against optuna run directly on the same numpy functions, and shared storages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from pg_helpers import fresh_database
from scipy.optimize import rosen

optuna = pytest.importorskip("optuna")

import torchzero_bridge as tzb  # noqa: E402
from torchzero_bridge.errors import IgnoredOptionWarning, NonFiniteLossWarning  # noqa: E402
from torchzero_bridge.optuna import open_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def hand_loop(x0: np.ndarray, lo: float, hi: float, f, n_trials: int, seed: int) -> optuna.Study:
    """optuna's own ask/tell loop, starting from an enqueued x0: the independent truth."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({f"x{k}": float(v) for k, v in enumerate(x0)})
    for _ in range(n_trials):
        trial = study.ask()
        x = np.array([trial.suggest_float(f"x{k}", lo, hi) for k in range(len(x0))])
        study.tell(trial, f(x))
    return study


def bounded(*tensors: torch.Tensor, lo: float = -2.0, hi: float = 2.0) -> list[dict]:
    return [{"params": list(tensors), "bounds": (lo, hi)}]


def test_seeded_run_reproduces_hand_written_ask_tell_loop() -> None:
    x0 = np.array([-1.2, 1.0, 0.5])
    ref = hand_loop(x0, -2.0, 2.0, rosen, 40, seed=7)
    w = torch.tensor(x0)
    opt = tzb.OptunaWrapper(bounded(w), n_trials=40, seed=7)
    loss = opt.step(lambda backward=True: rosen(w.numpy()))
    ours = opt.study.trials
    assert [t.value for t in ours] == [t.value for t in ref.trials]
    assert [t.params for t in ours] == [t.params for t in ref.trials]
    best = ref.best_trial
    assert float(loss) == best.value
    np.testing.assert_array_equal(w.numpy(), [best.params[f"x{k}"] for k in range(3)])
    assert opt.result.nfev == 40 and opt.result.success


def test_model_holds_best_trial_and_first_trial_is_the_start() -> None:
    model = torch.nn.Linear(2, 1).double()
    X = torch.randn(30, 2, dtype=torch.float64)
    y = X @ torch.tensor([[0.7], [-0.4]], dtype=torch.float64)
    start = tzb.FlatParams(model.parameters()).read()

    def closure(backward=True):
        return torch.nn.functional.mse_loss(model(X), y)

    groups = [{"params": model.parameters(), "bounds": (-1, 1)}]  # a generator, as users write it
    opt = tzb.OptunaWrapper(groups, n_trials=25, seed=0)
    loss = opt.step(closure)
    first = opt.study.trials[0]
    np.testing.assert_array_equal([first.params[n] for n in opt.names], start)
    best = opt.study.best_trial
    np.testing.assert_array_equal(tzb.FlatParams(model.parameters()).read(), [best.params[n] for n in opt.names])
    assert float(loss) == best.value == float(closure().detach())


def test_integer_and_boolean_tensors_round_trip() -> None:
    k = torch.tensor([0, 1], dtype=torch.int32)
    b = torch.tensor([True, False, False])
    w = torch.zeros(1, dtype=torch.float32)
    seen = set()

    def closure(backward=True):
        seen.add((k.dtype, b.dtype, w.dtype))
        return float(((k.double() - 2) ** 2).sum() + (b.double() - torch.tensor([0.0, 1.0, 1.0])).abs().sum())

    groups = [{"params": [k], "bounds": (-2.5, 3.7)}, {"params": [b]}, {"params": [w], "bounds": (0, 1)}]
    opt = tzb.OptunaWrapper(groups, n_trials=60, seed=1)
    opt.step(closure)
    assert seen == {(torch.int32, torch.bool, torch.float32)}
    assert k.dtype == torch.int32 and b.dtype == torch.bool
    dists = opt.study.trials[0].distributions
    assert dists["x0"] == optuna.distributions.IntDistribution(-2, 3)
    assert dists["x2"] == optuna.distributions.CategoricalDistribution((False, True))
    assert isinstance(dists["x5"], optuna.distributions.FloatDistribution)
    best = opt.study.best_trial.params
    assert k.tolist() == [best["x0"], best["x1"]] and b.tolist() == [best["x2"], best["x3"], best["x4"]]
    assert k.tolist() == [2, 2] and b.tolist() == [False, True, True]


def test_later_steps_continue_and_state_dict_resumes_in_memory() -> None:
    x0 = np.array([0.5, -0.5])
    ref = hand_loop(x0, -2.0, 2.0, rosen, 30, seed=3)
    w = torch.tensor(x0)
    opt = tzb.OptunaWrapper(bounded(w), n_trials=10, seed=3)
    closure = lambda backward=True: rosen(w.numpy())  # noqa: E731
    opt.step(closure)
    opt.step(closure)
    state = opt.state_dict()
    w2 = torch.tensor(x0)
    opt2 = tzb.OptunaWrapper(bounded(w2), n_trials=10)
    opt2.load_state_dict(state)
    opt2.step(lambda backward=True: rosen(w2.numpy()))
    assert [t.value for t in opt2.study.trials] == [t.value for t in ref.trials]
    np.testing.assert_array_equal(w2.numpy(), [ref.best_params["x0"], ref.best_params["x1"]])


def test_state_dict_resumes_a_study_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    w = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt = tzb.OptunaWrapper(bounded(w), n_trials=8, storage=url, study_name="resume", seed=0)
    opt.step(lambda backward=True: rosen(w.numpy()))
    state = opt.state_dict()
    own = state["torchzero_bridge"]["state"]
    assert own["storage_url"] == url and "trials" not in own
    w2 = torch.zeros(2, dtype=torch.float64)
    opt2 = tzb.OptunaWrapper(bounded(w2), n_trials=8)
    opt2.load_state_dict(state)
    opt2.step(lambda backward=True: rosen(w2.numpy()))
    study = optuna.load_study(study_name="resume", storage=url)
    assert len(study.trials) == 16
    assert sum(t.params == {"x0": 0.0, "x1": 0.0} for t in study.trials) == 0  # the start is not enqueued again
    assert float(rosen(w2.numpy())) == study.best_value


def test_nonfinite_losses() -> None:
    w = torch.tensor([0.5], dtype=torch.float64)

    def closure(backward=True):
        x = float(w[0])
        return float("nan") if x < -1 else (float("inf") if x > 1 else (x - 0.2) ** 2)

    opt = tzb.OptunaWrapper(bounded(w), n_trials=40, seed=0, nonfinite="pass")
    with pytest.warns(NonFiniteLossWarning):
        opt.step(closure)
    states = {t.state for t in opt.study.trials}
    assert optuna.trial.TrialState.FAIL in states  # NaN
    assert any(t.value == float("inf") for t in opt.study.trials)  # inf is a value
    assert -1 <= float(w[0]) <= 1 and np.isfinite(opt.result.fun)


def test_callback_and_timeout_stop_cleanly() -> None:
    w = torch.tensor([0.5], dtype=torch.float64)
    opt = tzb.OptunaWrapper(bounded(w), n_trials=50, seed=0, callback=lambda r: r.nit >= 5)
    opt.step(lambda backward=True: float(w[0] ** 2))
    assert not opt.result.success and "callback" in opt.result.message
    assert len(opt.study.trials) == 5
    assert {t.state for t in opt.study.trials} == {optuna.trial.TrialState.COMPLETE}
    assert float(w[0] ** 2) == opt.study.best_value


def test_closure_error_fails_the_trial_and_restores_best() -> None:
    w = torch.tensor([0.5], dtype=torch.float64)
    calls = []

    def closure(backward=True):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return float(w[0] ** 2)

    opt = tzb.OptunaWrapper(bounded(w), n_trials=10, seed=0)
    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    states = [t.state for t in opt.study.trials]
    assert states[-1] == optuna.trial.TrialState.FAIL and len(states) == 4
    assert float(w[0] ** 2) == opt.study.best_value


def test_bad_arguments_give_clear_errors() -> None:
    a = torch.zeros(2)
    b = torch.zeros(3)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\].*no finite"):
        tzb.OptunaWrapper([{"params": [a], "bounds": (0, 1)}, {"params": [b], "bounds": (0, None)}], n_trials=3)
    with pytest.raises(ValueError, match="no finite"):
        tzb.OptunaWrapper([a], n_trials=3)
    with pytest.raises(ValueError, match="n_trials expected an int >= 1, got 0"):
        tzb.OptunaWrapper(bounded(a), n_trials=0)
    with pytest.raises(TypeError, match="n_trials"):
        tzb.OptunaWrapper(bounded(a))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="no integer"):
        tzb.OptunaWrapper([{"params": [torch.zeros(1, dtype=torch.int64)], "bounds": (0.2, 0.8)}], n_trials=3)
    with pytest.warns(IgnoredOptionWarning, match="seed is ignored"):
        tzb.OptunaWrapper(bounded(a), optuna.samplers.RandomSampler(seed=0), n_trials=3, seed=1)
    with pytest.raises(ValueError, match="does not minimize"):
        storage = optuna.storages.InMemoryStorage()
        optuna.create_study(storage=storage, study_name="up", direction="maximize")
        tzb.OptunaWrapper(bounded(a), n_trials=3, storage=storage, study_name="up")


# ---------------------------------------------------------------------- several processes
WORKER = textwrap.dedent(
    """
    import json, os, sys, time, warnings
    warnings.simplefilter("ignore")
    import torch, optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import torchzero_bridge as tzb

    spec, name, seed, n_trials, barrier, n_workers, out = sys.argv[1:]
    if spec.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        storage = JournalStorage(JournalFileBackend(spec[len("journal:"):]))
    else:
        storage = spec
    w = torch.zeros(3, dtype=torch.float64)
    values = []

    def closure(backward=True):
        v = float(((w - torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)) ** 2).sum())
        values.append(v)
        return v

    open(os.path.join(barrier, seed), "w").close()  # everyone imports first, then all start at once
    while len(os.listdir(barrier)) < int(n_workers):
        time.sleep(0.001)
    opt = tzb.OptunaWrapper([{"params": [w], "bounds": (-1, 1)}], n_trials=int(n_trials),
                            storage=storage, study_name=name, seed=int(seed))
    loss = opt.step(closure)
    json.dump({"values": values, "final": float(loss), "x": w.tolist()}, open(out, "w"))
    """
)


def run_workers(spec: str, tmp_path: Path, n_workers: int, n_trials: int = 6) -> list[dict]:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    for i in range(n_workers):
        out = tmp_path / f"worker{i}.json"
        args = [spec, "shared", str(i), str(n_trials), str(barrier), str(n_workers), str(out)]
        procs.append((subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env, stderr=subprocess.PIPE), out))
    results = []
    for proc, out in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
        results.append(json.loads(out.read_text()))
    return results


def check_shared_study(study: optuna.Study, results: list[dict], n_trials: int) -> None:
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == n_trials * len(results)
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    every = sorted(v for r in results for v in r["values"])
    assert sorted(t.value for t in trials) == every  # every worker's trials are in the study
    assert study.best_value == every[0]
    finals = [r["final"] for r in results]
    assert min(finals) == study.best_value  # the last worker to finish holds the global best
    for r in results:
        assert r["final"] <= min(r["values"]) and r["final"] in every
        match = [t for t in trials if t.value == r["final"]]
        assert [match[0].params[f"x{k}"] for k in range(3)] == r["x"]


@pytest.mark.parametrize(("kind", "n_workers"), [("sqlite", 3), ("journal", 2)])
def test_workers_started_at_once_share_one_study(kind: str, n_workers: int, tmp_path: Path) -> None:
    """Workers start together on a fresh storage (the schema-creation race), then share one study."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        spec, storage = url, url
    else:
        path = tmp_path / "study.log"
        spec = f"journal:{path}"
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(path)))
    results = run_workers(spec, tmp_path, n_workers)
    check_shared_study(optuna.load_study(study_name="shared", storage=storage), results, 6)


@pytest.mark.postgres
def test_workers_share_one_study_on_postgresql(tmp_path: Path) -> None:
    with fresh_database() as url:
        results = run_workers(url, tmp_path, 3)
        check_shared_study(optuna.load_study(study_name="shared", storage=url), results, 6)


def test_open_study_joins_an_existing_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = open_study(url, "s")
    first.enqueue_trial({"x0": 0.0})
    again = open_study(url, "s")
    assert again._study_id == first._study_id and len(again.trials) == 1


def test_checkpoint_trial_attributes_optuna_would_unpickle_are_refused(tmp_path: Path) -> None:
    """CmaEsSampler unpickles hex text from trial system attributes: such a checkpoint is refused."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    w = torch.zeros(2, dtype=torch.float64)
    make = lambda: tzb.OptunaWrapper([{"params": [w], "bounds": (-1, 1)}], n_trials=4, seed=0)  # noqa: E731
    opt = make()
    opt.step(lambda backward=True: (w**2).sum())
    state = opt.state_dict()
    state["torchzero_bridge"]["state"]["trials"][1]["system_attrs"]["cma:optimizer:0"] = pickle.dumps(Payload()).hex()
    with pytest.raises(ValueError, match="cma:optimizer:0"):
        make().load_state_dict(state)
    assert not (tmp_path / "ran").exists()


def test_state_dict_is_plain_and_resumes_the_sampler_stream() -> None:
    """The sampler is rebuilt by the constructor; its generator states come from the checkpoint."""
    from torchzero_bridge.core.state import check_plain

    w = torch.zeros(3, dtype=torch.float64)

    def make() -> tzb.OptunaWrapper:
        sampler = optuna.samplers.TPESampler(seed=3, n_startup_trials=3)
        return tzb.OptunaWrapper([{"params": [w], "bounds": (-2, 2)}], sampler, n_trials=5)

    f = lambda backward=True: ((w - 0.5) ** 2).sum()  # noqa: E731
    opt = make()
    opt.step(f)
    state = opt.state_dict()
    check_plain(state)
    opt.step(f)
    uninterrupted = [t.params for t in opt.study.trials[5:]]
    other = make()
    other.load_state_dict(state)
    other.step(f)
    assert [t.params for t in other.study.trials[5:]] == uninterrupted
