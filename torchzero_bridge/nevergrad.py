"""NevergradWrapper: any nevergrad optimizer as a ``torch.optim.Optimizer``, driven by ask/tell.

Every evaluation runs the closure without backward; a later ``step`` continues the same nevergrad
run. ``nevergrad`` is an optional extra: importing this module does not import it.

Example:
    >>> import torch
    >>> import torchzero_bridge as tzb
    >>> w = torch.zeros(3, dtype=torch.float64)
    >>> opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=300, seed=0)
    >>> def closure(backward=True):
    ...     return ((w - 0.5) ** 2).sum()
    >>> loss = opt.step(closure)
    >>> bool(loss < 1e-3)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.optimize import OptimizeResult

from torchzero_bridge._checks import check_int, check_positive, check_seed
from torchzero_bridge._nevergrad_run import AskTellHistory, NevergradSpace, suggest_names
from torchzero_bridge._optional import import_extra
from torchzero_bridge._preload import nevergrad_step_imports, preload
from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.base import BridgeOptimizer, SolveContext, UserCallback
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import NonFinitePolicy, StopSolve
from torchzero_bridge.core.remote import check_executor
from torchzero_bridge.core.threads import ThreadsSpec
from torchzero_bridge.errors import IgnoredOptionWarning

if TYPE_CHECKING:
    import nevergrad as ng

__all__ = ["NevergradWrapper", "resolve_nevergrad_optimizer"]

OptimizerSpec = Any  # registry name | nevergrad Optimizer subclass | ConfiguredOptimizer instance
_NG_CLIP = 5.0e20  # nevergrad's tell replaces losses that are not below this (inf, NaN) by it


def _nevergrad() -> Any:
    ng = import_extra("nevergrad", extra="nevergrad", owner="NevergradWrapper")
    from torchzero_bridge._nevergrad_compat import apply_guards

    apply_guards()
    return ng


def resolve_nevergrad_optimizer(optimizer: OptimizerSpec) -> tuple[Callable[..., Any], str]:
    """Turn a registry name, an optimizer class or a configured family into a factory.

    Args:
        optimizer: a name from ``nevergrad.optimizers.registry`` (exact spelling), a subclass
            of ``nevergrad.optimizers.base.Optimizer``, or a ``ConfiguredOptimizer`` such as
            ``nevergrad.families.ParametrizedCMA(popsize=20)``.

    Returns:
        ``(factory, name)``; ``factory(parametrization, budget, num_workers)`` builds the
        optimizer.

    Raises:
        ValueError: unknown registry name (the message lists close matches).
        TypeError: anything else, including an already built optimizer instance.

    Example:
        >>> from torchzero_bridge.nevergrad import resolve_nevergrad_optimizer
        >>> resolve_nevergrad_optimizer("CMA")[1]
        'CMA'
    """
    ng = _nevergrad()
    base = ng.optimizers.base
    if isinstance(optimizer, str):
        registry = ng.optimizers.registry
        if optimizer in registry:
            return registry[optimizer], optimizer
        raise ValueError(
            f"optimizer: {optimizer!r} is not in nevergrad's registry; {suggest_names(optimizer, list(registry))}"
        )
    if isinstance(optimizer, type) and issubclass(optimizer, base.Optimizer):
        return optimizer, optimizer.__name__
    if isinstance(optimizer, base.ConfiguredOptimizer):
        return optimizer, getattr(optimizer, "name", None) or repr(optimizer)
    if isinstance(optimizer, base.Optimizer):
        raise TypeError(
            "optimizer: got an already built nevergrad optimizer; pass its registry name or class "
            f"(e.g. {type(optimizer).__name__!r}) so the parametrization can be built from the parameters"
        )
    raise TypeError(
        "optimizer: expected a nevergrad registry name, an Optimizer subclass or a ConfiguredOptimizer, "
        f"got {type(optimizer).__name__}"
    )


class NevergradWrapper(BridgeOptimizer):
    """A nevergrad optimizer as a ``torch.optim.Optimizer``: each ``step`` runs ask/tell rounds.

    The parametrization comes from the parameters. Floating entries form one
    ``ng.p.Array(init=x)`` (``x`` = the parameters at the first ``step``); ``sigma`` (or, when
    not given, ``(hi - lo) / 6`` on entries bounded on both sides, nevergrad's convention, and
    ``1`` elsewhere) is set with ``set_mutation``; per-group ``bounds`` then become
    ``set_bounds(lower, upper)`` (nevergrad's default "bouncing" method; unbounded entries
    stay unbounded). Integer tensors form a second ``Array`` with integer casting, boolean
    tensors a ``ng.p.Choice([False, True], repetitions=k)``; several kinds are combined in a
    ``ng.p.Tuple``. With only unbounded floats and no ``sigma`` the parametrization is
    exactly ``ng.p.Array(init=x)``, seeded with ``np.random.RandomState(seed)``.

    One ``step(closure)`` spends ``evals_per_step`` evaluations (default: all of ``budget``)
    and can be called again to continue the same run (past ``budget`` nevergrad keeps asking;
    solvers that have converged then return random points, with nevergrad's own warning).
    Every evaluation runs the closure without a backward pass. With ``num_workers > 1``
    that many candidates are asked at once and evaluated as one batch (one vectorized pass
    when the closure is a :class:`~torchzero_bridge.BatchObjective`). After ``step`` the
    parameters hold the better of nevergrad's recommendation (evaluated once if it was never
    evaluated, e.g. TBPSA's mean) and the best point evaluated, unless the step's start point
    or an earlier step's best is strictly better (a step never ends worse than it started; see
    :class:`~torchzero_bridge.BridgeOptimizer`). Non-finite losses are told to nevergrad as they
    are (it clips them to ``5e20``) and never become the answer.

    Checkpoints: ``state_dict()`` holds the seed (drawn at the first step when ``seed`` is
    ``None``), the start point and the ask/tell history as tensors, never a nevergrad object;
    ``load_state_dict`` rebuilds the run and replays the history, and raises ``RuntimeError``
    if a replayed candidate differs from the recorded one.

    Args:
        params: tensors or param-group dicts; a group may carry ``bounds=(lo, hi)`` and
            ``sigma``. Integer and boolean tensors are optimized as integers / choices.
        optimizer: a nevergrad registry name (default ``"NGOpt"``), an ``Optimizer``
            subclass, or a configured family (``ng.families.ParametrizedCMA(...)``).
        budget: total evaluations nevergrad plans for (required, positive).
        evals_per_step: evaluations per ``step`` (default: ``budget``).
        num_workers: candidates asked per round and evaluated as one batch.
        executor: a ``concurrent.futures.Executor`` or a ``dask.distributed.Client`` that
            evaluates each round of ``num_workers`` candidates on its workers (the closure or
            ``BatchObjective`` is sent once per step; a closure must be picklable).
        sigma: initial mutation scale of float and integer entries (positive).
        seed: seeds the parametrization's random state (nevergrad's seeding).
        callback: called after each ask/tell round with an ``OptimizeResult`` (``x``,
            ``fun`` = best so far, ``nit``, ``nfev``); returning ``True`` stops the step.
        timeout: seconds before the step stops cleanly.
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while the step runs.
        nonfinite: how NaN/inf losses are reported (``"inf"``, ``"raise"``, ``"pass"``).

    Attributes:
        ng_optimizer: the nevergrad optimizer (built at the first ``step``), for nevergrad's
            own API (``suggest``, ``register_callback``, ``archive``...).
        result: the last step's ``OptimizeResult``.

    Raises:
        ImportError: nevergrad is not installed (``pip install torchzero_bridge[nevergrad]``).
        ValueError: unknown optimizer name (with close matches), ``budget``/``evals_per_step``/
            ``num_workers`` not positive, bad ``sigma``.
        TypeError: wrong argument types.

    Example:
        >>> import torch
        >>> import torchzero_bridge as tzb
        >>> model = torch.nn.Linear(2, 1)
        >>> X, y = torch.randn(64, 2), torch.randn(64, 1)
        >>> opt = tzb.NevergradWrapper(model.parameters(), "TwoPointsDE", budget=200, seed=1)
        >>> def closure(backward=True):
        ...     return torch.nn.functional.mse_loss(model(X), y)
        >>> loss = opt.step(closure)
        >>> opt.result.nit  # ask/tell rounds
        200
    """

    allow_integer = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        optimizer: OptimizerSpec = "NGOpt",
        *,
        budget: int,
        evals_per_step: int | None = None,
        num_workers: int = 1,
        sigma: float | None = None,
        seed: int | None = None,
        callback: UserCallback | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
        executor: Any = None,
    ) -> None:
        check_int(budget, "budget", "NevergradWrapper")
        self.executor = check_executor(executor, "NevergradWrapper")
        if executor is not None and num_workers == 1:
            warn_user(
                "executor: with num_workers=1 candidates are asked and evaluated one at a time, so the "
                "executor is not used; set num_workers to the number of candidates per batch",
                IgnoredOptionWarning,
            )
            self.executor = None
        if evals_per_step is not None:
            check_int(evals_per_step, "evals_per_step", "NevergradWrapper")
        check_int(num_workers, "num_workers", "NevergradWrapper")
        if sigma is not None:
            check_positive(sigma, "sigma", "NevergradWrapper")
        check_seed(seed, owner="NevergradWrapper", numpy=True)
        self._factory, self.optimizer_name = resolve_nevergrad_optimizer(optimizer)
        preload(*nevergrad_step_imports(self.optimizer_name))  # not inside a step, where a SIGINT could cut it
        self.budget = budget
        self.evals_per_step = evals_per_step
        self.num_workers = num_workers
        self.seed = seed
        super().__init__(
            params,
            {"sigma": sigma},
            callback=callback,
            timeout=timeout,
            progress=progress,
            threads=threads,
            nonfinite=nonfinite,
        )
        for gi, group in enumerate(self.param_groups):
            if group.get("sigma") is not None:
                check_positive(group["sigma"], f"param_groups[{gi}]['sigma']", "NevergradWrapper")
        self.flat_params().bounds()  # validates bounds now
        self.ng_optimizer: ng.optimization.base.Optimizer | None = None
        self._space: NevergradSpace | None = None
        self._history: AskTellHistory | None = None
        self._run: dict[str, Any] = {}  # what rebuilds the run: seed, start point, budget, workers
        self._pending: list[Any] = []  # candidates asked but not told (an interrupted round)
        self._rounds = 0

    # ------------------------------------------------------------------ the run
    def _start_run(self, flat: FlatParams, x0: np.ndarray) -> None:
        ng = _nevergrad()
        bounds = flat.bounds()
        if bounds is not None:
            x0 = flat.layout.clip_start(x0, *bounds, then="nevergrad starts from it clipped into the bounds")
        # without a seed one is drawn here, so that a checkpoint can rebuild the run from it
        seed = self.seed if self.seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        self._build_run(ng, flat, x0, seed, self.budget, self.num_workers)

    def _build_run(self, ng: Any, flat: FlatParams, x0: np.ndarray, seed: int, budget: int, workers: int) -> None:
        bounds = flat.bounds()
        self._space = NevergradSpace(ng, flat, x0, bounds, self._sigma_vector(flat, bounds))
        param = self._space.parametrization
        param.random_state = np.random.RandomState(seed)
        self.ng_optimizer = self._factory(parametrization=param, budget=budget, num_workers=workers)
        self._history = AskTellHistory(self._space)
        self._run = {"seed": seed, "x0": x0.copy(), "budget": budget, "num_workers": workers}
        self._pending = []

    def _sigma_vector(self, flat: FlatParams, bounds: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
        """Per-entry initial sigma, or ``None`` to keep nevergrad's default everywhere."""
        sig, given = flat.layout.group_values("sigma", self.param_groups)
        if bounds is not None:
            lo, hi = bounds
            both = np.isfinite(lo) & np.isfinite(hi) & ~given
            sig[both] = (hi[both] - lo[both]) / 6.0
            sig[sig <= 0] = 1.0  # lo == hi: any positive scale works, nothing can move
        if not given.any() and np.all(sig == 1.0):
            return None
        return sig

    def _solve(self, ctx: SolveContext) -> OptimizeResult:
        flat, obj = ctx.flat, ctx.objective
        if self.ng_optimizer is None:
            self._start_run(flat, ctx.x0)
        space, opt, hist = self._space, self.ng_optimizer, self._history
        assert space is not None and opt is not None and hist is not None
        if space.n != flat.n:
            raise ValueError(
                f"the parameters now have {flat.n} entries but the nevergrad run was built for {space.n}; "
                "create a new NevergradWrapper for a changed model"
            )
        want = self.evals_per_step or self.budget
        success, message = True, f"spent {want} evaluations"
        rounds = 0
        try:
            with torch.no_grad():  # one context for the whole loop instead of one per evaluation
                run = self._one_at_a_time if self.num_workers == 1 else self._in_batches
                rounds = run(ctx, opt, space, want)
        except StopSolve as stop:
            success, message = False, stop.reason
            rounds = self._rounds
        rec = hist.recommend(opt)
        x = space.decode(rec).copy()
        if rec.loss is not None:
            fun = float(rec.loss) if rec.loss < _NG_CLIP else math.nan  # nevergrad's clip of a non-finite loss
        elif success:
            fun = obj.value(x)  # e.g. TBPSA's mean; the memo answers if it was evaluated after all
        else:
            fun = math.nan  # stopped: no further evaluations; the best point evaluated is the answer
        return OptimizeResult(x=x, fun=fun, success=success, status=0 if success else 1, message=message, nit=rounds)

    def _one_at_a_time(self, ctx: SolveContext, opt: Any, space: NevergradSpace, want: int) -> int:
        """``want`` ask/evaluate/tell rounds of one candidate; returns the rounds done."""
        hist = self._history
        assert hist is not None
        ask, tell, decode, value = hist.ask, hist.tell, space.decode, ctx.objective.value
        notify = ctx.user_callback is not None
        cand = None
        self._rounds = 0
        try:
            for i in range(1, want + 1):
                cand = self._pending.pop() if self._pending else ask(opt)  # an unfinished round goes first
                f = value(decode(cand))
                tell(opt, cand, f)
                cand = None
                self._rounds = i
                if notify:
                    self._notify(ctx, i)
        except BaseException:
            if cand is not None:
                self._pending = [cand]  # asked but not told: the next step evaluates it first
            raise
        return want

    def _in_batches(self, ctx: SolveContext, opt: Any, space: NevergradSpace, want: int) -> int:
        """Rounds of ``num_workers`` candidates evaluated as one batch; returns the rounds done."""
        obj, hist = ctx.objective, self._history
        assert hist is not None
        spent = self._rounds = 0
        while spent < want:
            if not self._pending:
                self._pending = [hist.ask(opt) for _ in range(min(self.num_workers, want - spent))]
            batch = self._pending
            losses = obj.values(np.stack([space.decode(c) for c in batch]))
            for cand, f in zip(batch, losses):
                hist.tell(opt, cand, float(f))
            self._pending = []
            spent += len(batch)
            self._rounds += 1
            if ctx.user_callback is not None:
                self._notify(ctx, self._rounds)
        return self._rounds

    @staticmethod
    def _notify(ctx: SolveContext, rounds: int) -> None:
        obj = ctx.objective
        ctx.callback(OptimizeResult(x=_copy(obj.best_x), fun=obj.best_f, nit=rounds, nfev=obj.nfev))

    def _answer_is_best(self) -> bool:
        return True

    # ------------------------------------------------------------------ state
    def _bridge_state(self) -> dict[str, Any]:
        """Settings, the last result, and the run as seed + start point + ask/tell history.

        No nevergrad object is saved: :meth:`load_state_dict` rebuilds the optimizer from the
        seed and replays the history (checking every replayed candidate against the record).
        Asks and tells made through :attr:`ng_optimizer` directly are not recorded; a state
        taken after such calls raises ``RuntimeError``.

        Example:
            >>> import torch, torchzero_bridge as tzb
            >>> w = torch.zeros(2, dtype=torch.float64)
            >>> opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=10, seed=0)
            >>> _ = opt.step(lambda backward=True: (w ** 2).sum())
            >>> opt2 = tzb.NevergradWrapper([w], "OnePlusOne", budget=10)
            >>> opt2.load_state_dict(opt.state_dict())
            >>> opt2.ng_optimizer.num_tell
            10
        """
        state = super()._bridge_state()
        state.update(optimizer_name=self.optimizer_name, budget=self.budget, seed=self.seed)
        if self.ng_optimizer is not None and self._history is not None:
            self._history.check_in_sync(self.ng_optimizer)
            state["nevergrad"] = {**self._run, "history": self._history.state()}
        return state

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        super()._load_bridge_state(state)
        run = state.get("nevergrad")
        if run is None:
            self.ng_optimizer, self._space, self._history, self._run, self._pending = None, None, None, {}, []
            return
        saved_name = state.get("optimizer_name")
        if saved_name != self.optimizer_name:
            raise ValueError(
                f"load_state_dict: the state holds a {saved_name!r} run but this NevergradWrapper uses "
                f"{self.optimizer_name!r}; construct it with the same optimizer"
            )
        flat = self.flat_params()
        x0 = np.asarray(run["x0"], dtype=np.float64).reshape(-1)
        if x0.shape != (flat.n,):
            raise ValueError(f"state_dict: the saved run has {x0.size} entries but the parameters have {flat.n}")
        self._build_run(_nevergrad(), flat, x0, int(run["seed"]), int(run["budget"]), int(run["num_workers"]))
        assert self._history is not None
        self._pending = self._history.replay(self.ng_optimizer, run["history"], self.optimizer_name)


def _copy(x: np.ndarray | None) -> np.ndarray | None:
    return None if x is None else x.copy()
