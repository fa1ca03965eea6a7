"""Every public optimizer with a small factory and a problem it runs on, for suites over all of them.

Each entry (:class:`~torchzero_bridge.testing.entry.Entry`) is ``(name, factory, problem, flags...)``:
``problem()`` builds a fresh reference module whose ``forward()`` returns the loss,
``factory(params)`` builds a seeded optimizer over that module's parameters with a small budget,
and the capability flags tell the contract suite which promises apply. Adding an optimizer to
every check is one row here.
Names are unique; an optimizer with several configurations that keep different state
(e.g. ``NevergradWrapper`` with several nevergrad solvers) has one entry per configuration,
named ``"Class[config]"``.

Example:
    >>> from torchzero_bridge.testing.registry import ENTRIES, entry
    >>> e = entry("RandomSearch")
    >>> model = e.problem()
    >>> opt = e.factory(model.parameters())
    >>> type(opt).__name__, len(ENTRIES) >= 27
    ('RandomSearch', True)
"""

from __future__ import annotations

from torchzero_bridge.testing.entry import Entry, logging_closure
from torchzero_bridge.testing.registry_native import NATIVE_ENTRIES
from torchzero_bridge.testing.registry_parts import (
    _GLOBAL,
    _NG,
    _OPTUNA,
    _SCIPY,
    _boxed,
    _minimize,
    _ng,
    _only,
    _optuna,
    _rastrigin,
    _rosen,
    _sphere,
    _t,
)

__all__ = ["ENTRIES", "Entry", "entry", "logging_closure", "optimizer_classes"]


ENTRIES: list[Entry] = [
    # scipy local (trust-constr is not flagged for bounds: scipy's iterates may leave them before convergence)
    Entry(
        "MinimizeWrapper[BFGS]", _minimize("BFGS", 4), _rosen, gradient=True, minimal=_only("MinimizeWrapper"), **_SCIPY
    ),
    Entry("MinimizeWrapper[L-BFGS-B]", _minimize("L-BFGS-B", 4), _rosen, gradient=True, bounds=True, **_SCIPY),
    Entry("MinimizeWrapper[Nelder-Mead]", _minimize("Nelder-Mead", 15), _rosen, bounds=True, **_SCIPY),
    Entry("MinimizeWrapper[trust-constr]", _minimize("trust-constr", 4), _rosen, gradient=True, **_SCIPY),
    Entry(
        "MinimizeWrapper[newton_cg_armijo]",
        lambda p, **o: _t("MinimizeWrapper")(p, method=_t("newton_cg_armijo"), options={"maxiter": 3}, **o),
        _rosen,
        gradient=True,
        **_SCIPY,
    ),
    # scipy global
    Entry(
        "DifferentialEvolutionWrapper",
        lambda p, **o: _t("DifferentialEvolutionWrapper")(_boxed(p), maxiter=3, popsize=4, polish=False, rng=1, **o),
        _rastrigin,
        integers=True,  # batching: a BatchObjective runs scipy's vectorized variant, a different (deferred) run
        stochastic=True,
        minimal=_only("DifferentialEvolutionWrapper", boxed=True),
        **_GLOBAL,
    ),
    Entry(
        "DifferentialEvolutionWrapper[warm_start]",
        lambda p, **o: _t("DifferentialEvolutionWrapper")(
            _boxed(p), maxiter=3, popsize=4, polish=True, rng=1, warm_start=True, **o
        ),
        _rastrigin,
        gradient=True,
        integers=True,
        stochastic=True,
        **_GLOBAL,
    ),
    Entry(
        "DualAnnealingWrapper",
        lambda p, **o: _t("DualAnnealingWrapper")(
            _boxed(p), maxiter=4, rng=2, minimizer_args={"method": "L-BFGS-B"}, **o
        ),
        _rastrigin,
        gradient=True,
        stochastic=True,
        minimal=_only("DualAnnealingWrapper", boxed=True),
        **_GLOBAL,
    ),
    Entry(
        "SHGOWrapper",
        lambda p, **o: _t("SHGOWrapper")(_boxed(p), n=16, iters=1, **o),
        _rastrigin,
        gradient=True,
        minimal=_only("SHGOWrapper", boxed=True),
        **_GLOBAL,
    ),
    Entry(
        "DirectWrapper",
        lambda p, **o: _t("DirectWrapper")(_boxed(p), maxfun=40, **o),
        _rastrigin,
        minimal=_only("DirectWrapper", boxed=True),
        **_GLOBAL,
    ),
    Entry(
        "BasinHoppingWrapper",
        lambda p, **o: _t("BasinHoppingWrapper")(p, {"method": "L-BFGS-B"}, niter=2, rng=4, **o),
        _rastrigin,
        gradient=True,
        stochastic=True,
        minimal=_only("BasinHoppingWrapper"),
        **_GLOBAL,
    ),
    # nevergrad (several solvers keep very different state)
    Entry("NevergradWrapper[OnePlusOne]", _ng("OnePlusOne"), _sphere, **_NG),
    Entry("NevergradWrapper[CMA]", _ng("CMA"), _sphere, **_NG),
    Entry("NevergradWrapper[TBPSA]", _ng("TBPSA"), _rastrigin, **_NG),
    Entry("NevergradWrapper[TwoPointsDE]", _ng("TwoPointsDE", num_workers=3), _sphere, **_NG),
    Entry("NevergradWrapper[NGOpt]", _ng("NGOpt"), _sphere, **_NG),
    Entry("NevergradWrapper[Powell]", _ng("Powell"), _sphere, **_NG),
    # pycma
    Entry(
        "CMAESWrapper",
        lambda p, **o: _t("CMAESWrapper")(p, 0.5, budget=8, seed=3, **o),
        _sphere,
        **{**_NG, "minimal": _only("CMAESWrapper", 0.5, budget=8)},
    ),
    Entry(
        "CMAESWrapper[bounds,restarts]",
        lambda p, **o: _t("CMAESWrapper")(_boxed(p), 0.5, budget=10, seed=3, restarts=2, options={"maxiter": 2}, **o),
        _rastrigin,
        **_NG,
    ),
    # optuna
    Entry("OptunaWrapper[TPE]", _optuna("TPE"), _sphere, **_OPTUNA),
    Entry("OptunaWrapper[Random]", _optuna("Random"), _sphere, **_OPTUNA),
    Entry("OptunaWrapper[NSGAII]", _optuna("NSGAII"), _sphere, **_OPTUNA),
    *NATIVE_ENTRIES,
]


def entry(name: str) -> Entry:
    """The entry called ``name``.

    Raises:
        KeyError: no such entry (the message lists the names).
    """
    for e in ENTRIES:
        if e.name == name:
            return e
    raise KeyError(f"no registry entry {name!r}; known: {[e.name for e in ENTRIES]}")


def optimizer_classes() -> set[str]:
    """Class names covered by at least one entry (``"Class[config]"`` counts for ``Class``)."""
    return {e.name.split("[")[0] for e in ENTRIES}
