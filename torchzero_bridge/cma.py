"""CMAESWrapper: pycma's CMA-ES (the ``cma`` package) as a ``torch.optim.Optimizer``, driven by ask/tell.

Every evaluation runs the closure without backward; a later ``step`` continues the same run.
``cma`` is an optional extra (``pip install torchzero_bridge[cma]``): importing this module does
not import it.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> w = torch.zeros(3, dtype=torch.float64)
    >>> opt = tzb.CMAESWrapper([w], 0.5, budget=300, seed=1)
    >>> def closure(backward=True):
    ...     return ((w - 0.5) ** 2).sum()
    >>> loss = opt.step(closure)
    >>> bool(loss < 1e-4), opt.result.nfev
    (True, 300)
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from scipy.optimize import OptimizeResult

from torchzero_bridge._checks import check_int, check_positive, check_seed
from torchzero_bridge._cma_run import QUIET, CMARun, cma_module
from torchzero_bridge.core.base import BridgeOptimizer, SolveContext, UserCallback
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import NonFinitePolicy, StopSolve
from torchzero_bridge.core.remote import check_executor
from torchzero_bridge.core.threads import ThreadsSpec

__all__ = ["CMAESWrapper"]

_OWNED = {
    "seed": "pass seed= to CMAESWrapper",
    "bounds": "give each param group bounds=(lo, hi)",
    "integer_variables": "integer and boolean tensors are integer variables already",
    "randn": "the samples must come from the seeded numpy random state",
    "popsize": "pass popsize= to CMAESWrapper",
    "verb_append": "the evaluation count is kept by the wrapper",
}


class CMAESWrapper(BridgeOptimizer):
    """CMA-ES from the ``cma`` package as a ``torch.optim.Optimizer``: each ``step`` runs ask/tell generations.

    The strategy is ``cma.CMAEvolutionStrategy(x0, sigma0, options)`` with ``x0`` = the
    parameters at the first ``step`` (clipped into the bounds, with a warning, when outside)
    and these options set from the wrapper's arguments: ``seed`` (drawn once when not given, so
    that checkpoints can rebuild the run), ``bounds`` from the param groups' ``bounds=(lo, hi)``
    (``cma``'s default boundary handling, ``BoundTransform``: every candidate lies in the box),
    ``integer_variables`` = the entries of integer and boolean tensors (``cma`` rounds them and
    keeps their step size from collapsing; booleans are the rounded value ``>= 0.5``),
    ``popsize``, and quiet output (no console lines, no ``outcmaes/`` files, no signals file).
    Any other ``cma`` option goes in ``options``.

    One ``step(closure)`` spends ``budget`` evaluations, exactly: a generation cut by the end of
    a step is finished by the next one, so ``k`` steps of ``budget`` evaluations sample the same
    points as one step of ``k * budget``. A generation is evaluated as one batch (one vectorized
    pass when the closure is a :class:`~torchzero_bridge.BatchObjective`), otherwise point by
    point. When ``cma`` stops the strategy (``tolfun``, ``tolx``, ``maxiter``... see
    ``cma.CMAOptions()``), it is restarted IPOP-style as ``cma.fmin(..., restarts=,
    incpopsize=)`` does: from the same ``x0`` and ``sigma0``, population times ``incpopsize``,
    seed plus one, evaluation count carried over; once ``restarts`` are used up a step ends
    early (``result.message`` holds ``cma``'s reasons) and later steps evaluate nothing. The
    evaluations match a hand-written ``es.ask()`` / ``es.tell()`` loop with the same seed and
    options (or ``cma.fmin`` with ``eval_final_mean=False`` for restarts).

    After ``step`` the parameters hold the best point evaluated (never the unevaluated mean;
    it is :attr:`es` ``.mean``), unless the step's start point or an earlier step's best is
    strictly better (see :class:`~torchzero_bridge.BridgeOptimizer`). Non-finite losses are told
    to ``cma`` as ``inf`` and never become the answer. ``cma`` samples from numpy's global random
    state; the wrapper swaps in a private state while ``cma`` runs, so numpy random numbers drawn
    by the closure or elsewhere neither change nor are changed by the run.

    Checkpoints: ``state_dict()`` holds the seed, ``x0``, ``sigma0``, every loss told so far and
    the losses of an unfinished generation (plain floats and tensors, never a ``cma`` object).
    ``load_state_dict`` rebuilds the strategy and replays the history (each generation is asked
    again and told its saved losses, which costs no closure run) and raises ``RuntimeError`` if
    the replayed mean differs from the saved one. Construct the wrapper with the same
    ``options``, ``popsize``, ``restarts`` and ``incpopsize`` before loading.

    Args:
        params: tensors or param-group dicts; a group may carry ``bounds=(lo, hi)`` and
            ``sigma`` (the initial step size of that group's entries, given to ``cma`` as the
            ``CMA_stds`` multipliers ``sigma / sigma0``). Integer and boolean tensors are
            optimized as integers.
        sigma0: initial step size (``cma``'s required ``sigma0``; about a quarter of the range
            where the optimum is expected).
        budget: evaluations per ``step`` (positive).
        popsize: population size (default ``cma``'s ``4 + 3 ln n``).
        restarts: IPOP restarts after ``cma`` stops the strategy (``0``: none).
        incpopsize: population factor of each restart (``> 1``).
        seed: ``cma``'s ``seed`` option (a positive integer).
        options: further ``cma`` options (names as in ``cma.CMAOptions()``).
        callback: called after each generation with an ``OptimizeResult`` (``x``, ``fun`` = best
            so far, ``nit`` = generations this step, ``nfev``); returning ``True`` stops the step.
        timeout: seconds before the step stops cleanly.
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while the step runs.
        nonfinite: how NaN/inf losses are reported (``"inf"``, ``"raise"``, ``"pass"``).
        executor: a ``concurrent.futures.Executor`` or a ``dask.distributed.Client`` that
            evaluates each generation in chunks on its workers (same run as serially; the
            closure or ``BatchObjective`` is sent once per step).

    Attributes:
        es: the current ``cma.CMAEvolutionStrategy`` (built at the first ``step``), for
            ``cma``'s own API (``es.result``, ``es.mean``, ``es.sigma``...).
        result: the last step's ``OptimizeResult``.

    Raises:
        ImportError: ``cma`` is not installed.
        ValueError: ``sigma0``, ``budget``, ``popsize``, ``restarts``, ``incpopsize`` or ``seed``
            out of range; an unknown ``cma`` option (with close matches) or one the wrapper
            sets itself (named, with what to use instead).
        TypeError: wrong argument types.

    Example:
        >>> import torch
        >>> import torchzero_bridge as tzb
        >>> model = torch.nn.Linear(2, 1)
        >>> X, y = torch.randn(64, 2), torch.randn(64, 1)
        >>> opt = tzb.CMAESWrapper(model.parameters(), 0.3, budget=120, popsize=8, seed=1)
        >>> def closure(backward=True):
        ...     return torch.nn.functional.mse_loss(model(X), y)
        >>> loss = opt.step(closure)
        >>> opt.result.nit, opt.result.nfev  # generations, evaluations
        (15, 120)
    """

    allow_integer = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        sigma0: float,
        *,
        budget: int,
        popsize: int | None = None,
        restarts: int = 0,
        incpopsize: float = 2.0,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
        callback: UserCallback | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
        executor: Any = None,
    ) -> None:
        self.executor = check_executor(executor, "CMAESWrapper")
        check_positive(sigma0, "sigma0", "CMAESWrapper")
        check_int(budget, "budget", "CMAESWrapper")
        if popsize is not None:
            check_int(popsize, "popsize", "CMAESWrapper")
            if popsize < 2:
                raise ValueError(f"popsize: CMAESWrapper needs at least 2 candidates per generation, got {popsize}")
        check_int(restarts, "restarts", "CMAESWrapper", minimum=0)
        if isinstance(incpopsize, bool) or not isinstance(incpopsize, (int, float)) or not incpopsize > 1:
            raise ValueError(f"incpopsize: expected a number greater than 1, got {incpopsize!r}")
        check_seed(seed, owner="CMAESWrapper", numpy=True)
        if seed == 0:
            raise ValueError("seed: cma reads seed=0 as 'seed from the clock'; pass a positive integer")
        self._cma_options = _check_options(options)
        super().__init__(
            params,
            {"sigma": None},
            callback=callback,
            timeout=timeout,
            progress=progress,
            threads=threads,
            nonfinite=nonfinite,
        )
        self.flat_params().bounds()  # validates bounds now
        for gi, group in enumerate(self.param_groups):
            if group["sigma"] is not None:
                check_positive(group["sigma"], f"param_groups[{gi}]['sigma']", "CMAESWrapper")
                if "CMA_stds" in self._cma_options:
                    raise ValueError(
                        f"param_groups[{gi}]['sigma'] and options['CMA_stds'] both set per-entry step sizes; "
                        "give one of them"
                    )
        self.sigma0 = float(sigma0)
        self.budget = budget
        self.popsize = popsize
        self.restarts = restarts
        self.incpopsize = float(incpopsize)
        self.seed = seed
        self._run: CMARun | None = None
        self._pending: np.ndarray | None = None  # an unfinished generation (rows), asked but not told
        self._pending_f: list[float] = []  # the losses of its first rows

    @property
    def es(self) -> Any:
        """The current ``cma.CMAEvolutionStrategy`` (``None`` before the first ``step``)."""
        return None if self._run is None else self._run.es

    # ------------------------------------------------------------------ the run
    def _options(self, flat: FlatParams) -> dict[str, Any]:
        opts = dict(self._cma_options)
        box = flat.bounds()
        if box is not None:
            opts["bounds"] = [box[0].copy(), box[1].copy()]
        if flat.has_integers:
            opts["integer_variables"] = np.flatnonzero(flat.integer_mask).tolist()
        if self.popsize is not None:
            opts["popsize"] = self.popsize
        sigmas, given = flat.layout.group_values("sigma", self.param_groups)
        if given.any():
            opts["CMA_stds"] = np.where(given, sigmas / self.sigma0, 1.0)
        return opts

    def _build_run(self, flat: FlatParams, x0: np.ndarray, seed: int) -> None:
        self._run = CMARun(
            x0, self.sigma0, self._options(flat), seed=seed, restarts=self.restarts, incpopsize=self.incpopsize
        )
        self._pending, self._pending_f = None, []

    def _start_run(self, flat: FlatParams, x0: np.ndarray) -> None:
        box = flat.bounds()
        if box is not None:
            x0 = flat.layout.clip_start(x0, box[0], box[1], then="CMA-ES starts from it clipped into the bounds")
        seed = self.seed if self.seed is not None else int(np.random.SeedSequence().generate_state(1)[0] % 2**31) + 1
        self._build_run(flat, x0, seed)

    def _solve(self, ctx: SolveContext) -> OptimizeResult:
        flat = ctx.flat
        if self._run is None:
            self._start_run(flat, ctx.x0)
        run = self._run
        assert run is not None
        if run.x0.size != flat.n:
            raise ValueError(
                f"the parameters now have {flat.n} entries but the CMA-ES run was built for {run.x0.size}; "
                "create a new CMAESWrapper for a changed model"
            )
        success, message, gens = True, f"spent {self.budget} evaluations", 0
        try:
            with torch.no_grad():
                gens, stop = self._generations(ctx, run)
            if stop:
                message = f"CMA-ES stopped after {run.irun + 1} run(s): {stop}"
        except StopSolve as s:
            success, message = False, s.reason
        obj = ctx.objective
        x = ctx.x0.copy() if obj.best_x is None else obj.best_x.copy()
        fun = obj.best_f if obj.best_x is not None else math.nan
        return OptimizeResult(x=x, fun=fun, success=success, status=0 if success else 1, message=message, nit=gens)

    def _generations(self, ctx: SolveContext, run: CMARun) -> tuple[int, dict[str, Any]]:
        """Ask, evaluate and tell until ``budget`` evaluations are spent; returns (generations told, stop)."""
        obj, flat = ctx.objective, ctx.flat
        spent = gens = 0
        while spent < self.budget:
            if self._pending is None:
                X = run.ask()
                if X is None:
                    return gens, run.stopped()
                self._pending, self._pending_f = X, []
            X, done = self._pending, len(self._pending_f)
            take = min(len(X) - done, self.budget - spent)
            rows = flat.round_integers(X[done : done + take])
            if obj.batch is not None:
                self._pending_f.extend(obj.values(rows).tolist())
            else:
                for row in rows:  # one at a time: an error keeps the losses already paid for
                    self._pending_f.append(obj.value(row))
            spent += take
            if len(self._pending_f) == len(X):
                f = self._pending_f
                self._pending, self._pending_f = None, []
                run.tell(X, f)
                gens += 1
                if ctx.user_callback is not None:
                    ctx.callback(OptimizeResult(x=_copy(obj.best_x), fun=obj.best_f, nit=gens, nfev=obj.nfev))
                else:
                    ctx.check_deadline()
        return gens, {}

    def _answer_is_best(self) -> bool:
        return True

    # ------------------------------------------------------------------ state
    def _bridge_state(self) -> dict[str, Any]:
        """Settings, the last result and the run as seed + ``x0`` + the losses told (no ``cma`` object).

        Example:
            >>> import torch, torchzero_bridge as tzb
            >>> w = torch.zeros(2, dtype=torch.float64)
            >>> opt = tzb.CMAESWrapper([w], 0.5, budget=10, seed=2)
            >>> _ = opt.step(lambda backward=True: (w ** 2).sum())
            >>> opt2 = tzb.CMAESWrapper([w], 0.5, budget=10)
            >>> opt2.load_state_dict(opt.state_dict())
            >>> opt2.es.countevals, len(opt2.state_dict()["torchzero_bridge"]["state"]["cma"]["pending_f"])
            (6, 4)
        """
        state = super()._bridge_state()
        state.update(sigma0=self.sigma0, seed=self.seed)
        run = self._run
        if run is not None:
            state["cma"] = {
                "seed": run.seed,
                "x0": run.x0.copy(),
                "told": np.array(run.told, dtype=np.float64),
                "pending_f": np.array(self._pending_f, dtype=np.float64),
                "mean": run.mean(),
            }
        return state

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        super()._load_bridge_state(state)
        saved = state.get("cma")
        if saved is None:
            self._run, self._pending, self._pending_f = None, None, []
            return
        flat = self.flat_params()
        x0 = np.asarray(saved["x0"], dtype=np.float64).reshape(-1)
        if x0.shape != (flat.n,):
            raise ValueError(f"state_dict: the saved CMA-ES run has {x0.size} entries but the parameters have {flat.n}")
        self._build_run(flat, x0, int(saved["seed"]))
        run = self._run
        assert run is not None
        told = np.asarray(saved["told"], dtype=np.float64).reshape(-1)
        pending_f = np.asarray(saved["pending_f"], dtype=np.float64).reshape(-1).tolist()
        hint = "construct the CMAESWrapper with the same options, popsize, restarts and incpopsize as the saved one"
        if run.replay(told) is not None:
            raise RuntimeError(f"load_state_dict: the saved losses end inside a generation of the replayed run; {hint}")
        if pending_f:
            X = run.ask()  # the unfinished generation (after a restart when the strategy had stopped)
            if X is None or len(pending_f) >= len(X):
                raise RuntimeError(
                    f"load_state_dict: the saved unfinished generation does not fit the replayed run; {hint}"
                )
            self._pending, self._pending_f = X, pending_f
        if not np.array_equal(run.mean(), np.asarray(saved["mean"], dtype=np.float64).reshape(-1)):
            raise RuntimeError(f"load_state_dict: replaying the saved CMA-ES history gave another mean; {hint}")


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options: expected a dict of cma options, got {type(options).__name__}")
    known = set(cma_module().CMAOptions())
    for key in options:
        if key in _OWNED:
            raise ValueError(f"options[{key!r}]: set by CMAESWrapper itself; {_OWNED[key]}")
        if key in QUIET:
            continue
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=3)
            hint = f"; close matches: {close}" if close else "; see cma.CMAOptions() for the names"
            raise ValueError(f"options[{key!r}]: not a cma option{hint}")
    return dict(options)


def _copy(x: np.ndarray | None) -> np.ndarray | None:
    return None if x is None else x.copy()
