"""What the global ``scipy.optimize`` wrappers share.

* :class:`GlobalWrapper`: the base class. It merges a gngdb-style options dict with keyword
  arguments (checked against the scipy function's own parameter names), keeps the random
  generator so that ``state_dict`` can resume a run exactly, and adapts each solver's
  callback to the library's ``callback(OptimizeResult) -> stop?`` convention.
* the local searches (:mod:`torchzero_bridge.scipy._local`): every local search gets the
  problem's bounds (per-group or the solver's own) when its method accepts bounds, computes
  gradients only while it runs, and counts them as scipy does.

Example:
    >>> plain_data({"niter": 5, "take_step": print})
    {'niter': 5}
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import Bounds, OptimizeResult  # noqa: F401  (Bounds: used in the doctest)

from torchzero_bridge._warn import warn_user
from torchzero_bridge.core.base import BridgeOptimizer, SolveContext, UserCallback, materialize_params
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.objective import HVP_METHODS, NonFinitePolicy
from torchzero_bridge.core.param_checks import estimator_group_keys
from torchzero_bridge.core.threads import ThreadsSpec
from torchzero_bridge.errors import IgnoredOptionWarning
from torchzero_bridge.scipy._callables import (
    _merge_args,
    _resolve_method,
    _validate_jac,
    builtin_hessian,
    estimator_of,
    warn_unused_hvp_method,
)
from torchzero_bridge.scipy._local import local_box, local_minimizer, require_bounds
from torchzero_bridge.scipy.methods import MethodInfo
from torchzero_bridge.scipy.option_checks import check_minimize_args, check_solver_options

__all__ = ["GlobalWrapper", "local_minimizer", "require_bounds"]

_PLAIN = (type(None), bool, numbers.Number, str, np.ndarray, np.generic)


def plain_data(options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that are plain data (numbers, strings, arrays, nested dicts/lists).

    Callables and objects (``workers`` pools, ``take_step``, callbacks) are left out: they
    cannot be saved in a ``state_dict``.

    Example:
        >>> plain_data({"niter": 5, "take_step": print, "options": {"maxiter": 3}})
        {'niter': 5, 'options': {'maxiter': 3}}
    """
    out: dict[str, Any] = {}
    for k, v in options.items():
        if _is_plain(v):
            out[k] = copy.deepcopy(v)
    return out


def _objects(options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that :func:`plain_data` leaves out (kept when loading a state)."""
    return {k: v for k, v in options.items() if not _is_plain(v)}


def _is_plain(v: Any) -> bool:
    if isinstance(v, _PLAIN):
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    if isinstance(v, Mapping):
        return all(isinstance(k, str) and _is_plain(x) for k, x in v.items())
    return False


class GlobalWrapper(BridgeOptimizer):
    """Base class of the wrappers around scipy's global solvers; one ``step`` is one solve.

    Subclasses set :attr:`solver` and :attr:`options_name` and implement :meth:`_run`.

    Args:
        params: tensors or param-group dicts (a group may carry ``bounds=(lo, hi)``).
        minimizer_args: ``minimize`` arguments for the local searches (``None`` for solvers
            without local searches).
        solver_kwargs: the scipy function's keyword arguments (gngdb's dict).
        keywords: more of the scipy function's arguments as keywords.
        callback: called with an ``OptimizeResult`` (at least ``x`` and ``fun``); ``True`` stops.
        timeout: seconds before the run stops cleanly.
        progress: show a progress bar.
        threads: BLAS/OpenMP thread limit while scipy runs.
        nonfinite: how NaN/inf losses are reported to scipy.
        hvp_method: Hessian-vector products for local methods that use them.

    Example:
        >>> from scipy.optimize import direct
        >>> class MyDirect(GlobalWrapper):
        ...     solver = staticmethod(direct)
        ...     def _run(self, ctx, kwargs):
        ...         lo, hi = require_bounds(ctx.flat, self.flat_bounds, "MyDirect")
        ...         return direct(ctx.objective.value, Bounds(lo, hi), **kwargs)
        >>> w = torch.zeros(1, dtype=torch.float64)
        >>> opt = MyDirect([{"params": [w], "bounds": (-2.0, 2.0)}], None, None, {"maxfun": 50})
        >>> loss = opt.step(lambda: (w - 1.0).pow(2).sum())
        >>> round(w.item(), 2)
        1.0
    """

    solver: ClassVar[Callable[..., OptimizeResult]]
    """The scipy function."""
    options_name: ClassVar[str] = "solver_kwargs"
    """Name of the options dict in messages (``de_kwargs``...)."""
    has_local_search: ClassVar[bool] = False
    """The solver runs ``scipy.optimize.minimize`` and takes ``minimizer_kwargs``."""
    _controlled: ClassVar[frozenset[str]] = frozenset({"func", "x0", "args", "minimizer_kwargs"})

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        minimizer_args: Mapping[str, Any] | None,
        solver_kwargs: Mapping[str, Any] | None,
        keywords: Mapping[str, Any],
        *,
        callback: UserCallback | None = None,
        timeout: float | None = None,
        progress: bool = False,
        threads: ThreadsSpec = "auto",
        nonfinite: NonFinitePolicy = "inf",
        hvp_method: str = "autograd",
    ) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError("params: expected an iterable of tensors or of param-group dicts, got a single Tensor")
        params = materialize_params(params)
        flat = FlatParams(params, allow_integer=self.allow_integer)  # validates with messages naming tensors
        self.default_local = False
        kwargs = self._merge_solver_kwargs(solver_kwargs, keywords)
        check_solver_options(self.solver.__name__, kwargs, type(self).__name__, self.options_name)
        minimizer_args = self._preprocess(kwargs, minimizer_args)
        if "args" in kwargs:
            warn_user(
                f"{self.options_name}['args']: extra arguments for the objective have no meaning with a "
                "closure; they are ignored",
                IgnoredOptionWarning,
            )
            del kwargs["args"]
        native_cb = kwargs.pop("callback", None)
        if native_cb is not None and callback is not None:
            raise ValueError(f"callback given both in {self.options_name} and as a keyword; give it once")
        callback = callback if callback is not None else native_cb
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"hvp_method: expected one of {HVP_METHODS}, got {hvp_method!r}")
        self.hvp_method = hvp_method
        self.flat_bounds = kwargs.pop("bounds", None)
        self._rng_kind, self._rng = self._take_rng(kwargs)
        self.local_args: dict[str, Any] | None = None
        self.local_info: MethodInfo | None = None
        if self.has_local_search:
            given = kwargs.pop("minimizer_kwargs", None)
            if given is not None and minimizer_args is not None:
                raise ValueError(
                    f"minimizer_kwargs given both in {self.options_name} and as minimizer_args; give it once"
                )
            self.local_args, self.local_info = self._prepare_local(minimizer_args if given is None else given, flat)
        elif minimizer_args is not None:
            raise TypeError(f"{type(self).__name__} runs no local minimizer; minimizer_args must be None")
        warn_unused_hvp_method(self.local_args or {}, self.local_info, hvp_method)
        self.solver_kwargs = kwargs
        super().__init__(
            params, {}, callback=callback, timeout=timeout, progress=progress, threads=threads, nonfinite=nonfinite
        )
        self._check_bounds()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def solver_parameters(cls) -> frozenset[str]:
        """Keyword arguments the scipy function accepts (its own ``func`` excluded)."""
        names = set(inspect.signature(cls.solver).parameters)
        names.discard("func")
        return frozenset(names)

    def _merge_solver_kwargs(self, given: Mapping[str, Any] | None, keywords: Mapping[str, Any]) -> dict[str, Any]:
        if given is not None and not isinstance(given, Mapping):
            raise TypeError(f"{self.options_name}: expected a dict, got {type(given).__name__}")
        kwargs = dict(given or {})
        for key, value in keywords.items():
            if key in kwargs:
                raise ValueError(f"{key} given both in {self.options_name} and as a keyword; give it once")
            kwargs[key] = value
        known = self.solver_parameters() | self._extra_keys()
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: unknown option(s) {unknown} for scipy.optimize.{self.solver.__name__}; "
                f"expected some of {sorted(known)}"
            )
        return kwargs

    def _extra_keys(self) -> frozenset[str]:
        """Options this wrapper accepts beyond the scipy function's own."""
        return frozenset()

    def _take_rng(self, kwargs: dict[str, Any]) -> tuple[str | None, Any]:
        """Turn ``rng``/``seed`` into a generator kept across steps (so state_dict can resume it)."""
        values = {k: kwargs.pop(k, None) for k in ("rng", "seed")}
        given = [k for k, v in values.items() if v is not None]
        if len(given) == 2:
            raise ValueError("give either rng or seed, not both")
        if not given:
            return None, None
        return given[0], make_generator(given[0], values[given[0]])

    def _preprocess(self, kwargs: dict[str, Any], minimizer_args: Mapping[str, Any] | None) -> Any:
        """Move solver options that configure the local minimizer into ``minimizer_args``."""
        return minimizer_args

    def _prepare_local(
        self, minimizer_args: Mapping[str, Any] | None, flat: FlatParams
    ) -> tuple[dict[str, Any], MethodInfo]:
        args = _merge_args(minimizer_args)
        check_minimize_args(args, type(self).__name__, "minimizer_args")
        self.default_local = minimizer_args is None
        self._local_defaults(args, flat)
        info = _resolve_method(args)
        _validate_jac(args.get("jac", "auto"), info)
        local_box(args, flat, None)  # malformed local bounds fail here, not at the first step
        return args, info

    def _local_defaults(self, args: dict[str, Any], flat: FlatParams) -> None:
        """Fill the local minimizer's defaults the way the scipy solver would (``self.default_local``
        tells whether the user gave no minimizer arguments at all)."""

    def _check_bounds(self) -> None:
        """Validate bounds at construction (subclasses requiring a box override)."""
        self.flat_params().bounds(self.flat_bounds)

    # ------------------------------------------------------------------ hooks
    def _group_keys(self) -> set[str]:
        return super()._group_keys() | estimator_group_keys((self.local_args or {}).get("jac"))  # e.g. a group's h

    def _objective_options(self) -> dict[str, Any]:
        uses_hessian = (
            self.local_args is not None
            and self.local_info is not None
            and builtin_hessian(self.local_args, self.local_info) is not None
        )
        return {
            "hvp_method": self.hvp_method,
            "uses_hessian": uses_hessian,
            "gradient_estimator": estimator_of(self.local_args, self.local_info),
        }

    def _answer_is_best(self) -> bool:
        return True

    def _bridge_state(self) -> dict[str, Any]:
        state = super()._bridge_state()
        state["solver_kwargs"] = plain_data(self.solver_kwargs)
        state["flat_bounds"] = self.flat_bounds if _is_plain(self.flat_bounds) else None
        if self.local_args is not None:
            state["minimizer_args"] = plain_data(self.local_args)
            state["default_local"] = self.default_local
        state["rng"] = _rng_state(self._rng_kind, self._rng)
        return state

    def _load_bridge_state(self, state: dict[str, Any]) -> None:
        super()._load_bridge_state(state)
        if "solver_kwargs" in state:
            self.solver_kwargs = {**_objects(self.solver_kwargs), **state["solver_kwargs"]}
        if "flat_bounds" in state:
            self.flat_bounds = state["flat_bounds"]
        if self.local_args is not None and "minimizer_args" in state:
            self.local_args = {**_objects(self.local_args), **state["minimizer_args"]}
            self.local_info = _resolve_method(self.local_args)
            self.default_local = bool(state.get("default_local", self.default_local))
        if "rng" in state:
            self._rng_kind, self._rng = (None, None) if state["rng"] is None else _rng_restore(state["rng"])

    # ------------------------------------------------------------------ solve
    def _solve(self, ctx: SolveContext) -> OptimizeResult:
        kwargs = dict(self.solver_kwargs)
        check_solver_options(self.solver.__name__, kwargs, type(self).__name__, self.options_name)  # a loaded state too
        if self._rng_kind is not None:
            kwargs[self._rng_kind] = self._rng
        return self._run(ctx, kwargs)

    def _run(self, ctx: SolveContext, kwargs: dict[str, Any]) -> OptimizeResult:
        """Call the scipy function; ``kwargs`` are the user's options with the generator set."""
        raise NotImplementedError

    def _local(
        self, ctx: SolveContext, box: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[Callable[..., float], dict[str, Any]]:
        """``fun`` and ``minimizer_kwargs`` for the local searches, bounded by ``box`` (see :func:`local_box`)."""
        assert self.local_args is not None and self.local_info is not None
        return local_minimizer(self.local_args, self.local_info, ctx.objective, ctx.flat, box)

    def _warn_unbounded_local(self, box: Any, note: str) -> None:
        """Warn when the problem has bounds but the local method cannot take them."""
        info = self.local_info
        if box is None or info is None or info.bounds or self.local_args is None:
            return
        warn_user(
            f"method {info.name} cannot handle bounds, so the bounds do not reach the local searches "
            f"({note}); use L-BFGS-B, TNC, SLSQP, Powell, Nelder-Mead, COBYLA, COBYQA or trust-constr",
            IgnoredOptionWarning,
        )

    def _wants_callback(self) -> bool:
        return self.callback is not None or self.timeout is not None


# ---------------------------------------------------------------------- random generators
def make_generator(kind: str, value: Any) -> Any:
    """The generator scipy would build from ``rng=value`` or ``seed=value``, built once here.

    ``rng`` follows ``numpy.random.default_rng``; ``seed`` follows scipy's legacy rule (an int
    seeds a ``RandomState``; a ``Generator`` or ``RandomState`` is used as is).

    Example:
        >>> type(make_generator("rng", 0)).__name__, type(make_generator("seed", 0)).__name__
        ('Generator', 'RandomState')
    """
    if kind == "rng":
        return np.random.default_rng(value)
    if isinstance(value, (np.random.Generator, np.random.RandomState)):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return np.random.RandomState(int(value))
    raise TypeError(f"seed: expected an int, a numpy Generator or a RandomState, got {type(value).__name__}")


def _rng_state(kind: str | None, gen: Any) -> dict[str, Any] | None:
    if kind is None or gen is None:
        return None
    if isinstance(gen, np.random.Generator):
        return {"kind": kind, "type": "Generator", "state": copy.deepcopy(gen.bit_generator.state)}
    return {"kind": kind, "type": "RandomState", "state": gen.get_state(legacy=False)}


def _rng_restore(saved: Mapping[str, Any]) -> tuple[str, Any]:
    state = copy.deepcopy(saved["state"])
    if saved["type"] == "Generator":
        bit = getattr(np.random, state["bit_generator"])()
        bit.state = state
        return saved["kind"], np.random.Generator(bit)
    rs = np.random.RandomState()
    rs.set_state(state)
    return saved["kind"], rs


# ---------------------------------------------------------------------- callbacks
def result_callback(ctx: SolveContext, names: tuple[str, ...] = ()) -> Callable[..., None]:
    """A solver-native callback ``cb(x, f=None, *rest)`` that forwards an ``OptimizeResult`` to ``ctx.callback``.

    Args:
        ctx: the solve context (its callback raises :class:`StopSolve` on a stop request).
        names: result attribute names for the arguments after ``x`` and ``f``.

    Example:
        >>> from scipy.optimize import OptimizeResult
        >>> seen = []
        >>> class Ctx:
        ...     callback = staticmethod(seen.append)
        >>> result_callback(Ctx(), ("accept",))([1.0, 2.0], 3.0, True)
        >>> seen[0].fun, seen[0].accept
        (3.0, True)
    """

    def callback(x: np.ndarray, f: float | None = None, *rest: Any) -> None:
        res = OptimizeResult(x=np.array(x, dtype=np.float64, copy=True))
        if f is None:
            known = ctx.objective.value_at(res.x)
            f = math.nan if known is None else known
        res.fun = float(f)
        for name, value in zip(names, rest):
            res[name] = value
        ctx.callback(res)

    return callback
