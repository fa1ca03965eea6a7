"""NevergradWrapper: any nevergrad optimizer as a ``torch.optim.Optimizer``, driven by ask/tell.

The parametrization is built from the parameters (see :class:`NevergradWrapper`), every
evaluation runs the closure without a backward pass, and a later ``step`` continues the same
nevergrad run. ``nevergrad`` is an optional extra: importing this module does not import it.

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

import difflib
import math
import pickle
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.optimize import OptimizeResult

from torchzero_bridge._checks import check_int, check_positive, check_seed
from torchzero_bridge._optional import import_extra
from torchzero_bridge._preload import nevergrad_step_imports, preload
from torchzero_bridge.core.base import BridgeOptimizer, SolveContext, UserCallback
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import NonFinitePolicy, StopSolve
from torchzero_bridge.core.threads import ThreadsSpec

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
            f"optimizer: {optimizer!r} is not in nevergrad's registry; {_suggest(optimizer, list(registry))}"
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


def _suggest(name: str, known: list[str]) -> str:
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.6)
    if close:
        return "did you mean " + ", ".join(repr(lowered[c]) for c in close) + "?"
    return "see nevergrad.optimizers.registry for the available names"


class _Space:
    """The nevergrad parametrization of a :class:`FlatParams` layout, and the way back.

    Floating entries form one ``ng.p.Array``; integer tensors another, with integer casting;
    boolean tensors a ``ng.p.Choice([False, True], repetitions=k)``. A single kind is used
    directly, several are wrapped in ``ng.p.Tuple`` (in that order).
    """

    def __init__(
        self,
        ng: Any,
        flat: FlatParams,
        x0: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray] | None,
        sigma: np.ndarray | None,
    ) -> None:
        n = flat.n
        is_bool = np.zeros(n, dtype=bool)
        for i, p in enumerate(flat.params):
            if p.dtype == torch.bool:
                is_bool[flat.offsets[i] : flat.offsets[i + 1]] = True
        kinds = [
            ("float", np.flatnonzero(~flat.integer_mask)),
            ("int", np.flatnonzero(flat.integer_mask & ~is_bool)),
            ("bool", np.flatnonzero(is_bool)),
        ]
        parts: list[Any] = []
        self.index: list[np.ndarray] = []
        for kind, idx in kinds:
            if idx.size == 0:
                continue
            if kind == "bool":
                part = ng.p.Choice([False, True], repetitions=int(idx.size))
                part.value = tuple(bool(v >= 0.5) for v in x0[idx])
            else:
                part = ng.p.Array(init=x0[idx].copy())
                if sigma is not None:  # before the bounds, which nevergrad checks against sigma
                    s = sigma[idx]
                    part.set_mutation(sigma=float(s[0]) if np.all(s == s[0]) else s.copy())
                if bounds is not None:
                    lo, hi = bounds[0][idx], bounds[1][idx]
                    if np.isfinite(lo).any() or np.isfinite(hi).any():
                        part.set_bounds(
                            lower=lo if np.isfinite(lo).any() else None,
                            upper=hi if np.isfinite(hi).any() else None,
                        )
                if kind == "int":
                    part.set_integer_casting()
            parts.append(part)
            self.index.append(idx)
        self.n = n
        self.single = len(parts) == 1
        self.parametrization = parts[0] if self.single else ng.p.Tuple(*parts)

    def decode(self, candidate: Any) -> np.ndarray:
        """Flat float64 vector of a candidate's value (a view may be returned; do not modify)."""
        if self.single:
            return np.asarray(candidate.value, dtype=np.float64).reshape(-1)
        x = np.empty(self.n)
        for idx, v in zip(self.index, candidate.value):
            x[idx] = np.asarray(v, dtype=np.float64).reshape(-1)
        return x


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
    evaluated, e.g. TBPSA's mean) and the best point evaluated. Non-finite losses are told to
    nevergrad as they are (it clips them to ``5e20``) and never become the answer.

    Args:
        params: tensors or param-group dicts; a group may carry ``bounds=(lo, hi)`` and
            ``sigma``. Integer and boolean tensors are optimized as integers / choices.
        optimizer: a nevergrad registry name (default ``"NGOpt"``), an ``Optimizer``
            subclass, or a configured family (``ng.families.ParametrizedCMA(...)``).
        budget: total evaluations nevergrad plans for (required, positive).
        evals_per_step: evaluations per ``step`` (default: ``budget``).
        num_workers: candidates asked per round and evaluated as one batch.
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
        >>> opt.result.nfev >= 200
        True
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
    ) -> None:
        check_int(budget, "budget", "NevergradWrapper")
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
        self._space: _Space | None = None
        self._pending: list[Any] = []  # candidates asked but not told (an interrupted round)
        self._rounds = 0

    # ------------------------------------------------------------------ the run
    def _start_run(self, flat: FlatParams, x0: np.ndarray) -> None:
        ng = _nevergrad()
        bounds = flat.bounds()
        if bounds is not None:
            lo, hi = bounds
            outside = (x0 < lo) | (x0 > hi)
            if outside.any():
                k = int(np.flatnonzero(outside)[0])
                warnings.warn(
                    f"the starting point is outside the bounds at {int(outside.sum())} entries "
                    f"(first: {flat.locate(k)}); nevergrad starts from it clipped into the bounds",
                    stacklevel=5,
                )
                x0 = np.clip(x0, lo, hi)
        self._space = _Space(ng, flat, x0, bounds, self._sigma_vector(flat, bounds))
        param = self._space.parametrization
        if self.seed is not None:
            param.random_state = np.random.RandomState(self.seed)
        opt = self._factory(parametrization=param, budget=self.budget, num_workers=self.num_workers)
        opt.enable_pickling()  # recast solvers keep their history so state_dict can pickle them
        self.ng_optimizer = opt
        self._pending = []

    def _sigma_vector(self, flat: FlatParams, bounds: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
        """Per-entry initial sigma, or ``None`` to keep nevergrad's default everywhere."""
        sig = np.ones(flat.n)
        given = np.zeros(flat.n, dtype=bool)
        i = 0
        for group in self.param_groups:
            for _ in group["params"]:
                if group.get("sigma") is not None:
                    sig[flat.offsets[i] : flat.offsets[i + 1]] = float(group["sigma"])
                    given[flat.offsets[i] : flat.offsets[i + 1]] = True
                i += 1
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
        space, opt = self._space, self.ng_optimizer
        assert space is not None and opt is not None
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
        rec = opt.provide_recommendation()
        x = space.decode(rec).copy()
        if rec.loss is not None:
            fun = float(rec.loss) if rec.loss < _NG_CLIP else math.nan  # nevergrad's clip of a non-finite loss
        elif success:
            fun = obj.value(x)  # e.g. TBPSA's mean; the memo answers if it was evaluated after all
        else:
            fun = math.nan  # stopped: no further evaluations; the best point evaluated is the answer
        return OptimizeResult(x=x, fun=fun, success=success, status=0 if success else 1, message=message, nit=rounds)

    def _one_at_a_time(self, ctx: SolveContext, opt: Any, space: _Space, want: int) -> int:
        """``want`` ask/evaluate/tell rounds of one candidate; returns the rounds done."""
        ask, tell, decode, value = opt.ask, opt.tell, space.decode, ctx.objective.value
        notify = ctx.user_callback is not None
        cand = None
        self._rounds = 0
        try:
            for i in range(1, want + 1):
                cand = self._pending.pop() if self._pending else ask()  # an unfinished round goes first
                f = value(decode(cand))
                if f < _NG_CLIP:
                    tell(cand, f)
                else:
                    _tell(opt, cand, f)
                cand = None
                self._rounds = i
                if notify:
                    self._notify(ctx, i)
        except BaseException:
            if cand is not None:
                self._pending = [cand]  # asked but not told: the next step evaluates it first
            raise
        return want

    def _in_batches(self, ctx: SolveContext, opt: Any, space: _Space, want: int) -> int:
        """Rounds of ``num_workers`` candidates evaluated as one batch; returns the rounds done."""
        obj = ctx.objective
        spent = self._rounds = 0
        while spent < want:
            if not self._pending:
                self._pending = [opt.ask() for _ in range(min(self.num_workers, want - spent))]
            batch = self._pending
            losses = obj.values(np.stack([space.decode(c) for c in batch]))
            for cand, f in zip(batch, losses):
                _tell(opt, cand, float(f))
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
        state = super()._bridge_state()
        state.update(optimizer_name=self.optimizer_name, budget=self.budget, seed=self.seed)
        return state

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state plus the pickled nevergrad run (and any unfinished round).

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
        sd = super().state_dict()
        if self.ng_optimizer is not None:
            sd["bridge"]["nevergrad"] = pickle.dumps((self.ng_optimizer, self._space, self._pending))
        return sd

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        super()._load_bridge_state(state)
        blob = state.get("nevergrad")
        if blob is not None:
            _nevergrad()
            self.ng_optimizer, self._space, self._pending = pickle.loads(blob)


def _tell(opt: Any, candidate: Any, loss: float) -> None:
    if math.isfinite(loss):
        opt.tell(candidate, loss)
        return
    # nevergrad clips non-finite losses itself; our NonFiniteLossWarning already said so
    from nevergrad.common.errors import LossTooLargeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossTooLargeWarning)
        opt.tell(candidate, loss)


def _copy(x: np.ndarray | None) -> np.ndarray | None:
    return None if x is None else x.copy()
