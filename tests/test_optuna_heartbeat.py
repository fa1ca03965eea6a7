"""A worker killed with ``kill -9`` mid-trial: its trial is failed and retried on heartbeat storages.

The truth is optuna's storage itself: trial states and parameters read back with
``optuna.load_study`` after a real SIGKILL of a worker process.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from pg_helpers import fresh_database

optuna = pytest.importorskip("optuna")

import torchzero_bridge as tzb  # noqa: E402
from torchzero_bridge.optuna_heartbeat import Heartbeat, fail_stale_trials, heartbeat_interval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)
TS = optuna.trial.TrialState
# optuna 4.9 renamed RDBStorage's failed_trial_callback (the old name still works, with a FutureWarning)
_RDB_ARGS = inspect.signature(optuna.storages.RDBStorage).parameters
STALE_CALLBACK = (
    "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in _RDB_ARGS else "failed_trial_callback"
)

# Evaluates normally until its 3rd closure run, then says so in a file and hangs there until killed.
DOOMED = textwrap.dedent(
    """
    import sys, time, warnings
    warnings.simplefilter("ignore")
    import torch, optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import torchzero_bridge as tzb

    url, name, flag = sys.argv[1:]
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    w = torch.zeros(2, dtype=torch.float64)
    calls = []

    def closure(backward=True):
        calls.append(1)
        if len(calls) == 3:
            open(flag, "w").write(repr(w.tolist()))
            time.sleep(600)
        return float((w ** 2).sum())

    opt = tzb.OptunaWrapper([{"params": [w], "bounds": (-1, 1)}], n_trials=5, storage=storage,
                            study_name=name, seed=0)
    opt.step(closure)
    """
)


def kill_mid_trial(url: str, name: str, tmp_path: Path) -> list[float]:
    """Start a worker, SIGKILL it while it evaluates a trial; returns the parameters it was evaluating."""
    flag = tmp_path / f"{name}.inside"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", DOOMED, url, name, str(flag)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (flag.exists() and flag.read_text()):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the worker never reached its third evaluation"
            time.sleep(0.05)
        time.sleep(1.5)  # let it record a heartbeat or two during the trial
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return eval(flag.read_text())  # a list of floats written by the worker above


def check_recovery(url: str, name: str, tmp_path: Path) -> None:
    hung = kill_mid_trial(url, name, tmp_path)
    before = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    running = [t for t in before if t.state == TS.RUNNING]
    assert len(running) == 1 and [running[0].params["x0"], running[0].params["x1"]] == hung

    # a second worker on a heartbeat storage with optuna's retry callback, after the grace period
    time.sleep(2.5)
    retry = optuna.storages.RetryFailedTrialCallback(max_retry=1)
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2, **{STALE_CALLBACK: retry})
    w = torch.zeros(2, dtype=torch.float64)
    seen: list[list[float]] = []

    def closure(backward: bool = True) -> float:
        seen.append(w.tolist())
        return float((w**2).sum())

    opt = tzb.OptunaWrapper([{"params": [w], "bounds": (-1, 1)}], n_trials=3, storage=storage, study_name=name, seed=1)
    opt.step(closure)

    after = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert not [t for t in after if t.state == TS.RUNNING]
    dead = next(t for t in after if t.number == running[0].number)
    assert dead.state == TS.FAIL
    retried = [t for t in after if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retried) == 1 and retried[0].state == TS.COMPLETE
    assert [retried[0].params["x0"], retried[0].params["x1"]] == hung
    assert hung in seen  # the retry was evaluated by this worker, with the dead trial's parameters


def test_killed_worker_on_sqlite_is_failed_and_retried(tmp_path: Path) -> None:
    check_recovery(f"sqlite:///{tmp_path / 'hb.db'}", "hb", tmp_path)


@pytest.mark.postgres
def test_killed_worker_on_postgresql_is_failed_and_retried(tmp_path: Path) -> None:
    with fresh_database() as url:
        check_recovery(url, "hb", tmp_path)


def test_heartbeats_are_recorded_only_while_a_trial_runs(tmp_path: Path) -> None:
    """Counted calls of the storage's own ``record_heartbeat``: one at ask, then one per interval."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'b.db'}", heartbeat_interval=1)
    study = optuna.create_study(storage=storage)
    assert heartbeat_interval(study) == 1.0
    beats: list[int] = []
    real = storage.record_heartbeat
    storage.record_heartbeat = lambda trial_id: (beats.append(trial_id), real(trial_id))[1]  # type: ignore[method-assign]
    with Heartbeat(study) as beat:
        trial = beat.ask()
        assert beats == [trial._trial_id]  # the first heartbeat is recorded at once
        time.sleep(1.3)
        study.tell(trial, 0.0)
        beat.idle()
        n = len(beats)
        assert n >= 2
        time.sleep(1.3)
        assert len(beats) == n  # idle: no heartbeat for a finished trial
    assert fail_stale_trials(study) == []


def test_storage_without_heartbeat_leaves_a_dead_trial_running(tmp_path: Path) -> None:
    """Documented limit: a plain URL has no heartbeats, so nothing can tell the trial's worker died."""
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(storage=url, study_name="plain")
    orphan = study.ask()  # as if its worker had been killed
    assert heartbeat_interval(study) is None
    w = torch.zeros(1, dtype=torch.float64)
    opt = tzb.OptunaWrapper([{"params": [w], "bounds": (-1, 1)}], n_trials=2, storage=url, study_name="plain", seed=0)
    opt.step(lambda backward=True: float((w**2).sum()))
    assert study.trials[orphan.number].state == TS.RUNNING
