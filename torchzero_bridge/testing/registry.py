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

from collections.abc import Iterable
from typing import Any

import torch

from torchzero_bridge.testing.entry import Entry, Factory, logging_closure
from torchzero_bridge.testing.functions import Sphere
from torchzero_bridge.testing.global_functions import Rastrigin
from torchzero_bridge.testing.problems import Rosenbrock

__all__ = ["ENTRIES", "Entry", "entry", "logging_closure", "optimizer_classes"]


def _rosen() -> torch.nn.Module:
    return Rosenbrock([-1.2, 1.0], [0.8])


def _sphere() -> torch.nn.Module:
    return Sphere([0.9, -0.4], [0.3], shift=0.25)


def _rastrigin() -> torch.nn.Module:
    return Rastrigin.at([1.3, -0.7, 0.4])


def _boxed(params: Iterable[Any], lo: float = -2.0, hi: float = 2.0) -> list[dict[str, Any]]:
    """One group ``bounds=(lo, hi)`` over tensors, or each given group with that box unless it has its own."""
    items = list(params)
    if items and isinstance(items[0], dict):
        return [{"bounds": (lo, hi), **g} for g in items]
    return [{"params": items, "bounds": (lo, hi)}]


def _tzb() -> Any:
    import torchzero_bridge

    return torchzero_bridge


def _t(name: str) -> Any:
    return getattr(_tzb(), name)


def _ng(name: str, **kw: Any) -> Factory:
    return lambda p, **o: _t("NevergradWrapper")(p, name, budget=40, evals_per_step=8, seed=3, **kw, **o)


def _optuna(sampler: str) -> Factory:
    def make(p: Iterable[Any], **options: Any) -> torch.optim.Optimizer:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers = {
            "TPE": lambda: optuna.samplers.TPESampler(seed=5, n_startup_trials=4),
            "Random": lambda: optuna.samplers.RandomSampler(seed=5),
            "NSGAII": lambda: optuna.samplers.NSGAIISampler(seed=5, population_size=4),
        }
        return _t("OptunaWrapper")(_boxed(p), samplers[sampler](), n_trials=6, **options)

    return make


def _adam(p: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.Adam(p, lr=0.05)


def _minimize(method: str, maxiter: int) -> Factory:
    return lambda p, **o: _t("MinimizeWrapper")(p, method=method, options={"maxiter": maxiter}, **o)


def _only(name: str, *args: Any, boxed: bool = False, **kw: Any) -> Factory:
    """The class with only its required arguments (bounds where the method needs a box)."""
    return lambda p: _t(name)(_boxed(p) if boxed else p, *args, **kw)


# flags shared by families
_SCIPY: dict[str, Any] = {"whole_run": True, "callback": True, "timeout": True}
_GLOBAL: dict[str, Any] = {**_SCIPY, "best_point": True, "bounds": True}
_NG: dict[str, Any] = {
    **_SCIPY,
    "best_point": True,
    "integers": True,
    "bounds": True,
    "stochastic": True,
    "minimal": _only("NevergradWrapper", budget=20),
}
_OPTUNA: dict[str, Any] = {**_NG, "minimal": _only("OptunaWrapper", boxed=True, n_trials=3)}
_ESTIMATOR: dict[str, Any] = {"loss_at_answer": False, "bounds": True, "stochastic": True}
_DFO: dict[str, Any] = {"best_point": True, "bounds": True, "stochastic": True}

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
    # gradient estimators
    Entry(
        "FDM", lambda p: _t("FDM")(p, opt=_adam), _rosen, minimal=_only("FDM"), **{**_ESTIMATOR, "stochastic": False}
    ),
    Entry("RDSA", lambda p: _t("RDSA")(p, opt=_adam, seed=1), _rosen, minimal=_only("RDSA"), **_ESTIMATOR),
    Entry("SPSA", lambda p: _t("SPSA")(p, opt=_adam, seed=1), _rosen, minimal=_only("SPSA"), **_ESTIMATOR),
    Entry("MeZO", lambda p: _t("MeZO")(p, opt=_adam, seed=1), _rosen, minimal=_only("MeZO"), **_ESTIMATOR),
    Entry(
        "RandomizedFDM",
        lambda p: _t("RandomizedFDM")(p, opt=_adam, seed=1),
        _rosen,
        minimal=_only("RandomizedFDM"),
        **_ESTIMATOR,
    ),
    Entry(
        "RandomizedFDM[AR1]",
        lambda p: _t("RandomizedFDM")(p, n_samples=2, distribution=_t("AR1")(0.8, _t("Smoothed")()), opt=_adam, seed=1),
        _rosen,
        **_ESTIMATOR,
    ),
    Entry(
        "ForwardGradient",
        lambda p: _t("ForwardGradient")(p, opt=_adam, seed=1),
        _rosen,
        minimal=_only("ForwardGradient"),
        **_ESTIMATOR,
    ),
    Entry(
        "GaussianSmoothing",
        lambda p: _t("GaussianSmoothing")(p, n_samples=4, opt=_adam, seed=1),
        _rosen,
        minimal=_only("GaussianSmoothing"),
        **_ESTIMATOR,
    ),
    Entry(
        "RandomGrad",
        lambda p: _t("RandomGrad")(p, lr=1e-2, opt=_adam, seed=1),
        _rosen,
        minimal=_only("RandomGrad"),
        **_ESTIMATOR,
    ),
    Entry(
        "RandomGrad[AR1]",
        lambda p: _t("RandomGrad")(p, lr=1e-2, opt=_adam, distribution=_t("AR1")(0.9), best_of=2, seed=1),
        _rosen,
        **_ESTIMATOR,
    ),
    Entry(
        "GradChain",
        lambda p: _t("GradChain")(p, [lambda q: torch.optim.SGD(q, lr=0.01, momentum=0.9), _adam]),
        _rosen,
        gradient=True,
        loss_at_answer=False,
    ),
    # wrappers that judge an inner optimizer's step by the loss
    Entry(  # never accepts a rise: on a deterministic problem the parameters hold the lowest loss seen
        "UndoOnRise",
        lambda p: _t("UndoOnRise")(p, lambda q: torch.optim.Adam(q, lr=0.3)),
        _rosen,
        gradient=True,
        best_point=True,
    ),
    Entry(
        "UndoOnRise[opposite,restore_state]",
        lambda p: _t("UndoOnRise")(
            p, lambda q: torch.optim.SGD(q, lr=0.01, momentum=0.9), on_rise="opposite", restore_state=True, shrink=0.5
        ),
        _rosen,
        gradient=True,
        best_point=True,
    ),
    Entry(
        "BestOfLRs",
        lambda p: _t("BestOfLRs")(p, lambda q: torch.optim.SGD(q, lr=1e-3, momentum=0.5), multipliers=(0.5, 1, 4)),
        _rosen,
        gradient=True,
    ),
    Entry(
        "MomentumToBest",
        lambda p: _t("MomentumToBest")(p, _adam, pull=0.2),
        _rosen,
        gradient=True,
        loss_at_answer=False,
    ),
    Entry(
        "MomentumToBest[SPSA]",
        lambda p: _t("MomentumToBest")(p, _t("SPSA")(h=1e-3, seed=1, opt=_adam), pull=0.3),
        _rosen,
        stochastic=True,
        loss_at_answer=False,
    ),
    # searches, walks, populations
    Entry(
        "RandomSearch",
        lambda p: _t("RandomSearch")(p, seed=1),
        _sphere,
        integers=True,
        batching=True,
        minimal=_only("RandomSearch"),
        **_DFO,
    ),
    Entry(
        "ShrinkingRandomSearch",
        lambda p: _t("ShrinkingRandomSearch")(p, nsteps=50, seed=1),
        _sphere,
        integers=True,
        batching=True,
        minimal=_only("ShrinkingRandomSearch"),
        **_DFO,
    ),
    Entry(
        "GridSearch",
        lambda p: _t("GridSearch")(_boxed(p, -1.0, 1.0), step=0.5),
        _sphere,
        integers=True,
        batching=True,
        **{**_DFO, "stochastic": False},
    ),
    Entry(
        "SequentialSearch",
        lambda p: _t("SequentialSearch")(p, lr=0.5),
        _sphere,
        integers=True,
        batching=True,
        minimal=_only("SequentialSearch"),
        **{**_DFO, "stochastic": False},
    ),
    Entry("RandomWalk", lambda p: _t("RandomWalk")(p, lr=0.2, seed=1), _sphere, minimal=_only("RandomWalk"), **_DFO),
    Entry(
        "AdaptiveOrderWalk",
        lambda p: _t("AdaptiveOrderWalk")(p, lr=0.2, seed=1),
        _sphere,
        minimal=_only("AdaptiveOrderWalk"),
        **_DFO,
    ),
    Entry(
        "AdaptiveOrderWalk[convex]",
        lambda p: _t("AdaptiveOrderWalk")(p, lr=0.2, convex=True, on_reject="opposite", seed=1),
        _sphere,
        **_DFO,
    ),
    Entry(
        "RandomWalk[AR1]",
        lambda p: _t("RandomWalk")(p, lr=0.2, order=2, distribution=_t("AR1")(0.7), seed=1),
        _sphere,
        **_DFO,
    ),
    Entry(
        "AdaptiveOrderWalk[Smoothed]",
        lambda p: _t("AdaptiveOrderWalk")(p, lr=0.2, distribution=_t("Smoothed")((1.0, 1.0)), seed=1),
        _sphere,
        **_DFO,
    ),
    Entry(
        "SecondOrderRandomWalk",
        lambda p: _t("SecondOrderRandomWalk")(p, lr=0.2, seed=1),
        _sphere,
        minimal=_only("SecondOrderRandomWalk"),
        **_DFO,
    ),
    Entry(
        "SimulatedAnnealing",
        lambda p: _t("SimulatedAnnealing")(p, lr=0.2, seed=1),
        _sphere,
        integers=True,
        minimal=_only("SimulatedAnnealing"),
        **_DFO,
    ),
    Entry(
        "EvolutionStrategy",
        lambda p: _t("EvolutionStrategy")(p, n_parents=2, n_offspring=4, seed=1),
        _sphere,
        integers=True,
        batching=True,
        minimal=_only("EvolutionStrategy"),
        **_DFO,
    ),
    Entry(
        "ParticleSwarm",
        lambda p: _t("ParticleSwarm")(p, n_particles=4, seed=1),
        _sphere,
        batching=True,
        minimal=_only("ParticleSwarm"),
        **_DFO,
    ),
    Entry(
        "EnsembleKalmanInversion",
        lambda p: _t("EnsembleKalmanInversion")(p, n_particles=4, step_size=10.0, randomize="step", seed=1),
        _sphere,
        batching=True,
        minimal=_only("EnsembleKalmanInversion"),
        **_DFO,
    ),
    Entry(
        "ParticleSwarm[size_schedule]",
        lambda p: _t("ParticleSwarm")(p, n_particles=3, size_schedule="linear", seed=1),
        _sphere,
        batching=True,
        **_DFO,
    ),
    Entry(
        "EvolutionStrategy[size_schedule]",
        lambda p: _t("EvolutionStrategy")(p, n_parents=2, n_offspring=3, size_schedule="linear", seed=1),
        _sphere,
        integers=True,
        batching=True,
        **_DFO,
    ),
    Entry(
        "EnsembleKalmanInversion[epoch,size_schedule]",
        lambda p: _t("EnsembleKalmanInversion")(
            p, n_particles=3, randomize="epoch", epoch_steps=2, size_schedule="linear", seed=1
        ),
        _sphere,
        batching=True,
        **_DFO,
    ),
    Entry(
        "SwarmOfOptimizers",
        lambda p: _t("SwarmOfOptimizers")(p, lambda q: _t("SPSA")(q, opt=_adam, seed=2), n=2, seed=1),
        _rosen,
        **_DFO,
    ),
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
