"""OptunaWrapper: an optuna study as a ``torch.optim.Optimizer``, driven by ask/tell.

Every scalar of the parameters is one optuna parameter; the study lives on any optuna
storage, so several processes or machines that open the same ``study_name`` and
``storage`` work on one study and each ends at the study's global best. ``optuna`` is an
optional extra: importing this module does not import it.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> w = torch.zeros(2, dtype=torch.float64)
    >>> opt = tzb.OptunaWrapper([{"params": [w], "bounds": (-2.0, 2.0)}], n_trials=60, seed=0)
    >>> def closure(backward=True):
    ...     return ((w - 0.5) ** 2).sum()
    >>> loss = opt.step(closure)
    >>> float(loss) == opt.study.best_value
    True
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from scipy.optimize import OptimizeResult

from torchzero_bridge._checks import check_int, check_seed
from torchzero_bridge._optional import import_extra
from torchzero_bridge._optuna_run import (
    OptunaSpace,
    load_sampler_state,
    sampler_state,
    trials_from_plain,
    trials_to_plain,
)
from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.base import BridgeOptimizer, SolveContext, UserCallback
from torchzero_bridge.core.objective import NonFinitePolicy, StopSolve
from torchzero_bridge.core.threads import ThreadsSpec
from torchzero_bridge.errors import IgnoredOptionWarning
from torchzero_bridge.optuna_heartbeat import Heartbeat, fail_stale_trials

if TYPE_CHECKING:
    import optuna

__all__ = ["OptunaWrapper", "open_study"]

_RACE_WORDS = ("already exists", "unique", "duplicate", "locked")


def _optuna() -> Any:
    return import_extra("optuna", extra="optuna", owner="OptunaWrapper")


def open_study(
    storage: Any = None,
    study_name: str | None = None,
    sampler: Any = None,
    *,
    attempts: int = 10,
    first_delay: float = 0.05,
) -> optuna.Study:
    """Create or load a minimizing study; safe when many processes start it at once.

    Workers that start together on a fresh SQLite file or PostgreSQL database race to create
    optuna's tables and the study; the losers fail with a unique-constraint or "already
    exists" error. Such errors are retried with exponential backoff and jitter (the retry
    then finds the tables and loads the study).

    Args:
        storage: anything ``optuna.create_study`` accepts: ``None`` (in memory), a database
            URL (``"sqlite:///study.db"``, ``"postgresql://..."``), or a storage object such as
            ``JournalStorage(JournalFileBackend("study.log"))``.
        study_name: the shared name (``None``: optuna picks a new unique name).
        sampler: an optuna sampler (``None``: optuna's default).
        attempts: tries before giving up.
        first_delay: seconds before the first retry (doubled each time, with jitter).

    Raises:
        ValueError: the study exists and maximizes, or has several objectives.
        RuntimeError: still failing after ``attempts`` tries (the last error is chained).

    Example:
        >>> from torchzero_bridge.optuna import open_study
        >>> open_study(None, "demo").direction.name
        'MINIMIZE'
    """
    opt = _optuna()
    import sqlalchemy.exc as sa_exc

    always = (sa_exc.IntegrityError, opt.exceptions.DuplicatedStudyError)
    maybe = (sa_exc.OperationalError, sa_exc.ProgrammingError, opt.exceptions.StorageInternalError)
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            where = storage
            if isinstance(storage, str) and storage.startswith("sqlite"):
                # SQLite serializes writers with a file lock; sqlite3's default 5 s wait for it is
                # short when several workers write on a busy machine ("database is locked").
                # Built inside the retry: creating the storage creates the schema, which races.
                where = opt.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 60}})
            study = opt.create_study(
                storage=where, study_name=study_name, sampler=sampler, direction="minimize", load_if_exists=True
            )
            break
        except always + maybe as e:
            text = f"{e} {e.__cause__ or ''}".lower()
            if not isinstance(e, always) and not any(w in text for w in _RACE_WORDS):
                raise
            last = e
            time.sleep(first_delay * 2**attempt * (0.5 + random.random()))
    else:
        raise RuntimeError(
            f"could not create or load study {study_name!r} after {attempts} attempts; last error: {last}"
        ) from last
    if len(study.directions) != 1 or study.direction != opt.study.StudyDirection.MINIMIZE:
        raise ValueError(
            f"study_name: study {study.study_name!r} in this storage does not minimize a single objective "
            f"(directions {[d.name for d in study.directions]}); use another name"
        )
    return study


class OptunaWrapper(BridgeOptimizer):
    """An optuna study as a ``torch.optim.Optimizer``: each ``step`` runs ``n_trials`` trials.

    Every scalar of the parameters is one optuna parameter named ``x{k}`` (``k`` = flat
    index, see :attr:`names`): floating entries use ``suggest_float(name, lo, hi)``, integer
    tensors ``suggest_int``, boolean tensors ``suggest_categorical(name, (False, True))``.
    Bounds come from per-group ``bounds=(lo, hi)`` and are required for float and integer
    entries. The parameters at the first ``step`` are evaluated and added as the first trial
    (clipped into the bounds). Each other trial is one ``study.ask()``, one closure run without backward,
    one ``study.tell``; a NaN loss is told as a failed trial, ``inf`` as a value. After
    ``step`` the parameters hold the study's best trial, which on a shared storage may come
    from another process, and ``step`` returns its value.

    Scale-out: give several processes (or machines) the same ``study_name`` and a shared
    ``storage`` (``"sqlite:///study.db"``, a journal file, a PostgreSQL URL); they may start
    at the same moment on a fresh database (see :func:`open_study`).

    Dead workers: on a storage with heartbeats (``optuna.storages.RDBStorage(url,
    heartbeat_interval=..., grace_period=..., heartbeat_stale_trial_callback=...)``; before
    optuna 4.9 the callback argument is ``failed_trial_callback``) each trial records a
    heartbeat while it evaluates, and every ``step`` first fails the running trials whose
    heartbeat is older than ``grace_period`` (a worker killed with ``kill -9``); optuna's
    ``RetryFailedTrialCallback`` as that callback re-queues their parameters. Without
    heartbeats (in memory, journal files, a plain URL) such a trial stays ``RUNNING``.
    See :mod:`torchzero_bridge.optuna_heartbeat`.

    Args:
        params: tensors or param-group dicts with ``bounds=(lo, hi)``.
        sampler: an optuna sampler; default ``optuna.samplers.TPESampler(seed=seed)``.
        n_trials: trials per ``step`` (required, positive).
        storage: anything optuna accepts (``None`` = in memory, a database URL, a storage
            object such as ``JournalStorage(JournalFileBackend(path))``).
        study_name: the study to create or join (``None``: a new unique name).
        seed: seeds the default sampler (ignored, with a warning, when ``sampler`` is given).
        callback: called after each trial with an ``OptimizeResult`` (``x``, ``fun`` = this
            process's best so far, ``nit``, ``nfev``); returning ``True`` stops the step.
        timeout: seconds before the step stops cleanly (checked before each trial).
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while the step runs.
        nonfinite: how NaN/inf losses are reported (``"inf"`` turns NaN into ``inf``).

    Attributes:
        study: the ``optuna.Study`` (use optuna's visualisation or dashboard on it).
        names: optuna parameter name of each flat entry.
        result: the last step's ``OptimizeResult``.

    Raises:
        ImportError: optuna is not installed (``pip install torchzero_bridge[optuna]``).
        ValueError: an entry without finite bounds (named), ``n_trials`` not positive, a
            study that exists and does not minimize.
        TypeError: wrong argument types.

    Example:
        >>> import torch, optuna
        >>> import torchzero_bridge as tzb
        >>> model = torch.nn.Linear(2, 1)
        >>> X, y = torch.randn(32, 2), torch.randn(32, 1)
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> opt = tzb.OptunaWrapper([{"params": model.parameters(), "bounds": (-3, 3)}], n_trials=30, seed=0)
        >>> def closure(backward=True):
        ...     return torch.nn.functional.mse_loss(model(X), y)
        >>> loss = opt.step(closure)
        >>> len(opt.study.trials)
        30
    """

    allow_integer = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        sampler: optuna.samplers.BaseSampler | None = None,
        *,
        n_trials: int,
        storage: Any = None,
        study_name: str | None = None,
        seed: int | None = None,
        callback: UserCallback | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
    ) -> None:
        opt = _optuna()
        check_int(n_trials, "n_trials", "OptunaWrapper")
        check_seed(seed, owner="OptunaWrapper", numpy=True)
        if study_name is not None and not isinstance(study_name, str):
            raise TypeError(f"study_name: expected a str or None, got {type(study_name).__name__}")
        if sampler is None:
            sampler = opt.samplers.TPESampler(seed=seed)
        elif not isinstance(sampler, opt.samplers.BaseSampler):
            raise TypeError(f"sampler: expected an optuna sampler or None, got {type(sampler).__name__}")
        elif seed is not None:
            warn_user(
                "seed is ignored when a sampler is given; seed the sampler itself (e.g. TPESampler(seed=...))",
                IgnoredOptionWarning,
            )
        super().__init__(
            params,
            {},
            callback=callback,
            timeout=timeout,
            progress=progress,
            threads=threads,
            nonfinite=nonfinite,
        )
        self._space = OptunaSpace(self.flat_params(), self.flat_params().bounds())
        self.names: list[str] = self._space.names
        self.n_trials = int(n_trials)
        self.seed = seed
        self.storage = storage
        self.study: optuna.Study = open_study(storage, study_name, sampler)
        self._enqueued = False
        self._done = 0

    # ------------------------------------------------------------------ solve
    def _solve(self, ctx: SolveContext) -> OptimizeResult:
        flat, space, study = ctx.flat, self._space, self.study
        if flat.n != space.n:
            raise ValueError(
                f"the parameters now have {flat.n} entries but the study was set up for {space.n}; "
                "create a new OptunaWrapper for a changed model"
            )
        success, message = True, f"ran {self.n_trials} trials"
        fail_stale_trials(study)  # trials of killed workers (storages with heartbeats only)
        try:
            with torch.no_grad(), Heartbeat(study) as beat:  # one context for the whole loop instead of one per trial
                first = 0
                if not self._enqueued:
                    self._add_start(ctx)
                    first = 1
                self._run_trials(ctx, first, beat)
        except StopSolve as stop:
            success, message = False, stop.reason
        done = self._done
        try:
            best_trial = study.best_trial
        except ValueError:  # no completed trial anywhere in the study
            return OptimizeResult(
                x=ctx.x0.copy(), fun=math.nan, success=False, status=2, message="no trial completed", nit=done
            )
        return OptimizeResult(
            x=space.vector_of(best_trial.params),
            fun=best_trial.value,
            success=success,
            status=0 if success else 1,
            message=message,
            nit=done,
            best_trial_number=best_trial.number,
        )

    def _run_trials(self, ctx: SolveContext, first: int, beat: Heartbeat) -> None:
        """Ask/evaluate/tell rounds up to ``n_trials`` (``first`` already done); ``self._done`` counts them."""
        fail = _optuna().trial.TrialState.FAIL
        study, suggest, value = self.study, self._space.suggest, ctx.objective.value
        notify = ctx.user_callback is not None
        self._done = first
        for done in range(first + 1, self.n_trials + 1):
            ctx.check_deadline()
            trial = beat.ask()
            try:
                f = value(suggest(trial))
            except BaseException:
                study.tell(trial, state=fail)  # never leave a trial RUNNING in a shared study
                beat.idle()
                raise
            if math.isnan(f):
                study.tell(trial, state=fail)  # how optuna itself records a NaN objective
            else:
                study.tell(trial, f)
            beat.idle()
            self._done = done
            if notify:
                obj = ctx.objective
                best = None if obj.best_x is None else obj.best_x.copy()
                ctx.callback(OptimizeResult(x=best, fun=obj.best_f, nit=done, nfev=obj.nfev))

    def _add_start(self, ctx: SolveContext) -> None:
        """Evaluate the starting parameters and record them as this worker's first trial.

        The start is evaluated here and added as a finished trial (``study.add_trial``) rather
        than enqueued: enqueued trials wait in a queue shared by every process on the storage,
        and on SQLite two workers can pop the same waiting trial.
        """
        opt, space, flat = _optuna(), self._space, ctx.flat
        then = "the first trial uses it clipped into the bounds"
        x = flat.layout.clip_start(ctx.x0, space.lo, space.hi, then=then)
        ctx.check_deadline()
        f = ctx.objective.value(x)
        params, dists = space.params_of(x), space.distributions()
        if math.isnan(f):
            trial = opt.trial.create_trial(params=params, distributions=dists, state=opt.trial.TrialState.FAIL)
        else:
            trial = opt.trial.create_trial(params=params, distributions=dists, value=f)
        self.study.add_trial(trial)
        self._enqueued = True

    def _answer_is_best(self) -> bool:
        return True

    # ------------------------------------------------------------------ state
    def _bridge_state(self) -> dict[str, Any]:
        """Settings, the last result, the sampler's random state and where the study lives.

        On a persistent storage the study stays there (its name, and the URL when the storage
        was given as one, are saved); an in-memory study is saved as its trials in plain
        values. The sampler is not saved: :meth:`load_state_dict` writes the saved random
        generator states into the sampler this wrapper was constructed with, which must be of
        the same class and settings.

        Example:
            >>> import torch, optuna, torchzero_bridge as tzb
            >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
            >>> w = torch.zeros(1, dtype=torch.float64)
            >>> make = lambda: tzb.OptunaWrapper([{"params": [w], "bounds": (-1, 1)}], n_trials=5, seed=0)
            >>> opt = make()
            >>> _ = opt.step(lambda backward=True: (w - 0.3).abs().sum())
            >>> opt2 = make()
            >>> opt2.load_state_dict(opt.state_dict())
            >>> len(opt2.study.trials)
            5
        """
        state = super()._bridge_state()
        state.update(study_name=self.study.study_name, enqueued=self._enqueued, n_trials=self.n_trials)
        state["sampler"] = sampler_state(self.study.sampler)
        if self._in_memory():
            state["trials"] = trials_to_plain(self.study.get_trials(deepcopy=False))
        elif isinstance(self.storage, str):
            state["storage_url"] = self.storage
        return state

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        super()._load_bridge_state(state)
        self._enqueued = bool(state.get("enqueued", self._enqueued))
        sampler = self.study.sampler
        if "sampler" in state:
            load_sampler_state(sampler, state["sampler"])
        name = state.get("study_name", self.study.study_name)
        if "trials" in state:
            if not self._in_memory():
                raise ValueError(
                    "load_state_dict: the state holds an in-memory study but this OptunaWrapper uses a "
                    "persistent storage; construct it with storage=None"
                )
            study = open_study(None, name, sampler)
            study.add_trials(trials_from_plain(state["trials"]))
            self.study = study
            return
        if self._in_memory():
            url = state.get("storage_url")
            if url is None:
                raise ValueError(
                    f"load_state_dict: study {name!r} lives on a storage object that cannot be saved; "
                    "construct OptunaWrapper with that storage, then load the state"
                )
            self.storage = url
        self.study = open_study(self.storage, name, sampler)

    def _in_memory(self) -> bool:
        return self.storage is None or isinstance(self.storage, _optuna().storages.InMemoryStorage)
