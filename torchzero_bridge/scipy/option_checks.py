"""The one table of scipy option ranges, checked when a wrapper is constructed.

scipy accepts many out-of-range options silently (``dual_annealing(maxiter=0)`` loops forever,
``shgo(n=0)`` returns NaN, negative iteration counts run nothing) or fails deep inside with a
message that does not name the option (``popsize="5"``). Every wrapper checks its options
against :data:`OPTION_RULES` before anything is evaluated, so a bad value is a ``ValueError``
naming the wrapper, the option and the range expected.

Only numeric options with a documented range are listed; anything else is left to scipy.
``None`` always passes (scipy reads it as "use the default" almost everywhere; where it does
not, scipy's own error stands). Counts must be ints; an integral float such as ``1e4`` is
accepted only where scipy itself works with one (``minimize``'s counts, ``dual_annealing``'s
``maxfun``, shgo's ``options``, basin hopping's ``interval`` and ``niter_success``).

Example:
    >>> check_solver_options("dual_annealing", {"maxiter": 0}, "DualAnnealingWrapper", "da_kwargs")
    Traceback (most recent call last):
    ...
    ValueError: DualAnnealingWrapper: da_kwargs['maxiter'] expected an int >= 1, got 0
    >>> check_minimize_args({"tol": 1e-6, "options": {"maxiter": 100}}, "MinimizeWrapper")
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from torchzero_bridge._checks import check_int, check_real

__all__ = ["OPTION_RULES", "Rule", "check_minimize_args", "check_solver_options"]


@dataclass(frozen=True)
class Rule:
    """The range of one numeric option.

    Attributes:
        kind: ``"int"``, ``"real"``, or ``"seed"`` (an int seed must be ``>= 0``; generators
            pass through).
        low: smallest value (ints) or lower end of the interval (reals); ``None`` = unbounded.
        high: upper end of the interval (reals only); ``None`` = unbounded.
        low_open: exclude ``low`` (reals).
        high_open: exclude ``high`` (reals).
        floats: ints only: also accept integral floats such as ``1e4`` (where scipy does).
    """

    kind: str
    low: float | None = 0
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    floats: bool = False

    def check(self, value: Any, name: str, owner: str) -> None:
        """Raise ``ValueError`` naming ``owner`` and ``name`` unless ``value`` is ``None`` or in range.

        Example:
            >>> Rule("int", 1).check(3, "n", "SHGOWrapper")
            >>> Rule("real", 0, low_open=True).check(-1.0, "stepsize", "BasinHoppingWrapper")
            Traceback (most recent call last):
            ...
            ValueError: BasinHoppingWrapper: stepsize expected a finite number > 0, got -1.0
        """
        if value is None:
            return
        if self.kind == "int":
            check_int(value, name, owner, minimum=int(self.low or 0), integral_float=self.floats)
        elif self.kind == "real":
            check_real(
                value, name, owner, low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open
            )
        elif isinstance(value, numbers.Integral) or (isinstance(value, np.ndarray) and value.ndim == 0):
            check_int(value, name, owner, minimum=0)


def _int(minimum: int, *, floats: bool = False) -> Rule:
    return Rule("int", minimum, floats=floats)


def _real(low: float = 0.0, high: float | None = None, *, low_open: bool = False, high_open: bool = False) -> Rule:
    return Rule("real", low, high, low_open, high_open)


_POSITIVE = _real(low_open=True)
_NONNEGATIVE = _real()
_FRACTION = _real(0.0, 1.0, low_open=True, high_open=True)
_SEED = Rule("seed")

OPTION_RULES: dict[str, dict[str, Rule]] = {
    # scipy.optimize.minimize: ``tol`` and the ``options`` every method shares a meaning for
    "minimize": {
        "tol": _NONNEGATIVE,
        "maxiter": _int(0, floats=True),  # minimize's methods compare counts, so 1e4 works
        "maxfun": _int(1, floats=True),
        "maxfev": _int(1, floats=True),
        "maxcor": _int(1),
        "maxls": _int(1),
        "gtol": _NONNEGATIVE,
        "ftol": _NONNEGATIVE,
        "xtol": _NONNEGATIVE,
        "xatol": _NONNEGATIVE,
        "fatol": _NONNEGATIVE,
        "xrtol": _NONNEGATIVE,
        "catol": _NONNEGATIVE,
        "rhobeg": _POSITIVE,
        "initial_trust_radius": _POSITIVE,
        "max_trust_radius": _POSITIVE,
        "initial_tr_radius": _POSITIVE,
        "barrier_tol": _NONNEGATIVE,
    },
    "differential_evolution": {
        "maxiter": _int(0),
        "popsize": _int(1),
        "tol": _NONNEGATIVE,
        "atol": _NONNEGATIVE,
        "recombination": _real(0.0, 1.0),
        "seed": _SEED,
        "rng": _SEED,
    },
    "dual_annealing": {
        "maxiter": _int(1),  # scipy loops forever, evaluating nothing, with maxiter <= 0
        "maxfun": _int(1, floats=True),  # scipy's own default is 1e7
        "initial_temp": _real(0.01, 5e4, low_open=True),
        "restart_temp_ratio": _FRACTION,
        "visit": _real(1.0, 3.0, low_open=True),
        "accept": _real(-1e4, -5.0, low_open=True),
        "seed": _SEED,
        "rng": _SEED,
    },
    "shgo": {
        "n": _int(1),  # n=0 returns NaN
        "iters": _int(1),
    },
    "shgo.options": {  # shgo only compares these with its counters, so 1e4 works
        "maxfev": _int(1, floats=True),
        "maxiter": _int(1, floats=True),
        "maxev": _int(1, floats=True),
        "maxtime": _POSITIVE,
        "f_tol": _NONNEGATIVE,
        "minhgrd": _int(0),
    },
    "direct": {
        "maxfun": _int(1),
        "maxiter": _int(1),
        "eps": _NONNEGATIVE,
        "f_min_rtol": _NONNEGATIVE,
        "vol_tol": _NONNEGATIVE,
        "len_tol": _NONNEGATIVE,
    },
    "basinhopping": {
        "niter": _int(0),
        "T": _NONNEGATIVE,
        "stepsize": _POSITIVE,
        "interval": _int(1, floats=True),  # compared and taken modulo, so 50.0 works
        "niter_success": _int(1, floats=True),
        "target_accept_rate": _FRACTION,
        "stepwise_factor": _FRACTION,
        "seed": _SEED,
        "rng": _SEED,
    },
}
"""Option ranges per scipy function (``"shgo.options"``: the entries of shgo's ``options`` dict)."""


def check_solver_options(solver: str, options: Mapping[str, Any], owner: str, where: str) -> None:
    """Check a global solver's keyword arguments against :data:`OPTION_RULES`.

    Args:
        solver: the scipy function's name (``"differential_evolution"``...).
        options: its keyword arguments as the user gave them.
        owner: the wrapper's name, used in messages.
        where: the name of the options dict in messages (``"de_kwargs"``).

    Raises:
        ValueError: an option out of range or of the wrong type; the message names it.

    Example:
        >>> check_solver_options("shgo", {"n": 0}, "SHGOWrapper", "shgo_kwargs")
        Traceback (most recent call last):
        ...
        ValueError: SHGOWrapper: shgo_kwargs['n'] expected an int >= 1, got 0
    """
    _check(OPTION_RULES.get(solver, {}), options, owner, where)
    nested = OPTION_RULES.get(f"{solver}.options")
    inner = options.get("options")
    if nested is not None and isinstance(inner, Mapping):
        _check(nested, inner, owner, f"{where}['options']")


def check_minimize_args(args: Mapping[str, Any], owner: str, where: str | None = None) -> None:
    """Check ``minimize`` arguments (``tol`` and the ``options`` dict) against :data:`OPTION_RULES`.

    Args:
        args: normalized ``minimize`` arguments.
        owner: the wrapper's name, used in messages.
        where: the name of the arguments dict in messages (``"minimizer_args"``); ``None``
            for arguments given to the wrapper itself.

    Raises:
        ValueError: ``tol`` or an option out of range or of the wrong type; the message names it.

    Example:
        >>> check_minimize_args({"options": {"maxiter": "10"}}, "MinimizeWrapper")
        Traceback (most recent call last):
        ...
        ValueError: MinimizeWrapper: options['maxiter'] expected an int >= 0, got '10'
    """
    rules = OPTION_RULES["minimize"]
    tol = args.get("tol")
    rules["tol"].check(tol, "tol" if where is None else f"{where}['tol']", owner)
    options = args.get("options")
    if isinstance(options, Mapping):
        options_rules = {k: r for k, r in rules.items() if k != "tol"}
        _check(options_rules, options, owner, "options" if where is None else f"{where}['options']")


def _check(rules: Mapping[str, Rule], options: Mapping[str, Any], owner: str, where: str) -> None:
    for key, value in options.items():
        rule = rules.get(key)
        if rule is not None:
            rule.check(value, f"{where}[{key!r}]", owner)
