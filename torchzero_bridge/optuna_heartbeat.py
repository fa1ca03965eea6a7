"""Liveness of running optuna trials: heartbeats while a trial evaluates, stale trials failed.

optuna's ``study.optimize`` records a heartbeat for its running trial and fails the trials of
dead workers, but only on a storage built with ``heartbeat_interval`` (``RDBStorage``: SQLite,
PostgreSQL, MySQL); an ask/tell loop has to do both itself. :class:`Heartbeat` is that loop's
part: one background thread per ``step`` that records a heartbeat for the trial being
evaluated, every ``heartbeat_interval`` seconds. :func:`fail_stale_trials` marks as failed the
running trials whose heartbeat is older than the storage's ``grace_period`` (their worker was
killed) and runs the storage's stale-trial callback for each, e.g. optuna's
``RetryFailedTrialCallback`` which puts the same parameters back in the queue.

On a storage without heartbeats (in memory, journal files, an ``RDBStorage`` without
``heartbeat_interval``) both do nothing: a trial whose worker is killed with ``kill -9``
stays ``RUNNING`` for good (optuna counts it in ``study.trials`` but never as a result).

Example:
    >>> import optuna
    >>> from torchzero_bridge.optuna_heartbeat import Heartbeat, fail_stale_trials
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study()
    >>> with Heartbeat(study) as beat:  # in memory: no heartbeats, nothing started
    ...     trial = beat.ask()
    ...     _ = study.tell(trial, 1.0)
    ...     beat.idle()
    >>> beat.enabled, fail_stale_trials(study)
    (False, [])
"""

from __future__ import annotations

import threading
import warnings
from types import TracebackType
from typing import Any

__all__ = ["Heartbeat", "fail_stale_trials", "heartbeat_interval"]


def _storage(study: Any) -> Any:
    # optuna keeps a study's storage in a private attribute; it has no public accessor.
    return study._storage


def heartbeat_interval(study: Any) -> float | None:
    """Seconds between heartbeats on ``study``'s storage, or ``None`` when it has none.

    Example:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> heartbeat_interval(optuna.create_study()) is None
        True
    """
    get = getattr(_storage(study), "get_heartbeat_interval", None)
    if get is None or not callable(getattr(_storage(study), "record_heartbeat", None)):
        return None
    interval = get()
    return None if interval is None else float(interval)


def fail_stale_trials(study: Any) -> list[int]:
    """Fail the running trials of dead workers; returns their trial numbers.

    A trial is stale when its last heartbeat is older than the storage's ``grace_period``.
    The storage's stale-trial callback runs for each one (a retry callback enqueues its
    parameters again). Nothing happens on a storage without heartbeats.

    Example:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> fail_stale_trials(optuna.create_study())
        []
    """
    if heartbeat_interval(study) is None:
        return []
    import optuna

    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    if not running:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = optuna.trial.TrialState.FAIL
    return sorted(t.number for t in study.get_trials(deepcopy=False, states=(failed,)) if t.number in running)


class Heartbeat:
    """A context manager that keeps the trial being evaluated alive in the storage.

    Get trials from :meth:`ask` instead of ``study.ask()`` (it records the trial's first
    heartbeat at once, so a worker killed during its first evaluation is detected too) and
    call :meth:`idle` after ``study.tell``. The background thread exits with the ``with`` block.

    Args:
        study: the optuna study whose storage receives the heartbeats.
    """

    def __init__(self, study: Any) -> None:
        self._study = study
        self._storage = _storage(study)
        self.interval = heartbeat_interval(study)
        self.enabled = self.interval is not None
        self._trial_id: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread = threading.Thread(target=self._beat_forever, name="tzb-optuna-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def ask(self) -> Any:
        """``study.ask()``, with the new trial's heartbeat recorded until :meth:`idle`."""
        if not self.enabled:
            return self._study.ask()
        with warnings.catch_warnings():
            # optuna warns that heartbeats belong to Study.optimize: this class is their ask/tell twin
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
            trial = self._study.ask()
        with self._lock:
            self._trial_id = trial._trial_id
            self._storage.record_heartbeat(self._trial_id)
        return trial

    def idle(self) -> None:
        """No trial is being evaluated (after ``study.tell``)."""
        with self._lock:
            self._trial_id = None

    def _beat_forever(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._trial_id is not None:
                    self._storage.record_heartbeat(self._trial_id)
