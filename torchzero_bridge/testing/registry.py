"""Every public optimizer with a small factory and a problem it runs on, for suites over all of them.

Each entry is ``(name, factory, problem)``: ``problem()`` builds a fresh reference module whose
``forward()`` returns the loss, ``factory(params)`` builds a seeded optimizer over that
module's parameters with a small budget. Adding an optimizer to the checks is one line here.
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

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch

from torchzero_bridge.testing.functions import Sphere
from torchzero_bridge.testing.global_functions import Rastrigin
from torchzero_bridge.testing.problems import Rosenbrock, make_closure

__all__ = ["ENTRIES", "Entry", "entry", "logging_closure", "optimizer_classes"]

Factory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]


class Entry(NamedTuple):
    """One registered optimizer setup.

    Attributes:
        name: unique id (the class name, or ``"Class[config]"``).
        factory: builds the optimizer over the given parameters (seeded, small budget).
        problem: builds a fresh module; ``module()`` is the loss.
    """

    name: str
    factory: Factory
    problem: Callable[[], torch.nn.Module]


def _rosen() -> torch.nn.Module:
    return Rosenbrock([-1.2, 1.0], [0.8])


def _sphere() -> torch.nn.Module:
    return Sphere([0.9, -0.4], [0.3], shift=0.25)


def _rastrigin() -> torch.nn.Module:
    return Rastrigin.at([1.3, -0.7, 0.4])


def _boxed(params: Iterable[torch.Tensor], lo: float = -2.0, hi: float = 2.0) -> list[dict[str, Any]]:
    return [{"params": list(params), "bounds": (lo, hi)}]


def _tzb() -> Any:
    import torchzero_bridge

    return torchzero_bridge


def _ng(name: str, **kw: Any) -> Factory:
    return lambda p: _tzb().NevergradWrapper(p, name, budget=40, evals_per_step=8, seed=3, **kw)


def _optuna(sampler: str) -> Factory:
    def make(p: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers = {
            "TPE": lambda: optuna.samplers.TPESampler(seed=5, n_startup_trials=4),
            "Random": lambda: optuna.samplers.RandomSampler(seed=5),
            "NSGAII": lambda: optuna.samplers.NSGAIISampler(seed=5, population_size=4),
        }
        return _tzb().OptunaWrapper(_boxed(p), samplers[sampler](), n_trials=6)

    return make


def _adam(p: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.Adam(p, lr=0.05)


def _t(name: str) -> Any:
    return getattr(_tzb(), name)


ENTRIES: list[Entry] = [
    # scipy local
    Entry("MinimizeWrapper[BFGS]", lambda p: _t("MinimizeWrapper")(p, method="BFGS", options={"maxiter": 4}), _rosen),
    Entry(
        "MinimizeWrapper[L-BFGS-B]",
        lambda p: _t("MinimizeWrapper")(p, method="L-BFGS-B", options={"maxiter": 4}),
        _rosen,
    ),
    Entry(
        "MinimizeWrapper[Nelder-Mead]",
        lambda p: _t("MinimizeWrapper")(p, method="Nelder-Mead", options={"maxiter": 15}),
        _rosen,
    ),
    Entry(
        "MinimizeWrapper[trust-constr]",
        lambda p: _t("MinimizeWrapper")(p, method="trust-constr", options={"maxiter": 4}),
        _rosen,
    ),
    Entry(
        "MinimizeWrapper[newton_cg_armijo]",
        lambda p: _t("MinimizeWrapper")(p, method=_t("newton_cg_armijo"), options={"maxiter": 3}),
        _rosen,
    ),
    # scipy global
    Entry(
        "DifferentialEvolutionWrapper",
        lambda p: _t("DifferentialEvolutionWrapper")(_boxed(p), maxiter=3, popsize=4, polish=False, rng=1),
        _rastrigin,
    ),
    Entry(
        "DifferentialEvolutionWrapper[warm_start]",
        lambda p: _t("DifferentialEvolutionWrapper")(
            _boxed(p), maxiter=3, popsize=4, polish=True, rng=1, warm_start=True
        ),
        _rastrigin,
    ),
    Entry(
        "DualAnnealingWrapper",
        lambda p: _t("DualAnnealingWrapper")(_boxed(p), maxiter=4, rng=2, minimizer_args={"method": "L-BFGS-B"}),
        _rastrigin,
    ),
    Entry("SHGOWrapper", lambda p: _t("SHGOWrapper")(_boxed(p), n=16, iters=1), _rastrigin),
    Entry("DirectWrapper", lambda p: _t("DirectWrapper")(_boxed(p), maxfun=40), _rastrigin),
    Entry(
        "BasinHoppingWrapper",
        lambda p: _t("BasinHoppingWrapper")(p, {"method": "L-BFGS-B"}, niter=2, rng=4),
        _rastrigin,
    ),
    # nevergrad (several solvers keep very different state)
    Entry("NevergradWrapper[OnePlusOne]", _ng("OnePlusOne"), _sphere),
    Entry("NevergradWrapper[CMA]", _ng("CMA"), _sphere),
    Entry("NevergradWrapper[TBPSA]", _ng("TBPSA"), _rastrigin),
    Entry("NevergradWrapper[TwoPointsDE]", _ng("TwoPointsDE", num_workers=3), _sphere),
    Entry("NevergradWrapper[NGOpt]", _ng("NGOpt"), _sphere),
    Entry("NevergradWrapper[Powell]", _ng("Powell"), _sphere),
    # pycma
    Entry("CMAESWrapper", lambda p: _t("CMAESWrapper")(p, 0.5, budget=8, seed=3), _sphere),
    Entry(
        "CMAESWrapper[bounds,restarts]",
        lambda p: _t("CMAESWrapper")(_boxed(p), 0.5, budget=10, seed=3, restarts=2, options={"maxiter": 2}),
        _rastrigin,
    ),
    # optuna
    Entry("OptunaWrapper[TPE]", _optuna("TPE"), _sphere),
    Entry("OptunaWrapper[Random]", _optuna("Random"), _sphere),
    Entry("OptunaWrapper[NSGAII]", _optuna("NSGAII"), _sphere),
    # gradient estimators
    Entry("FDM", lambda p: _t("FDM")(p, opt=_adam), _rosen),
    Entry("RDSA", lambda p: _t("RDSA")(p, opt=_adam, seed=1), _rosen),
    Entry("SPSA", lambda p: _t("SPSA")(p, opt=_adam, seed=1), _rosen),
    Entry("MeZO", lambda p: _t("MeZO")(p, opt=_adam, seed=1), _rosen),
    Entry("RandomizedFDM", lambda p: _t("RandomizedFDM")(p, opt=_adam, seed=1), _rosen),
    Entry("ForwardGradient", lambda p: _t("ForwardGradient")(p, opt=_adam, seed=1), _rosen),
    Entry("GaussianSmoothing", lambda p: _t("GaussianSmoothing")(p, n_samples=4, opt=_adam, seed=1), _rosen),
    Entry("RandomGrad", lambda p: _t("RandomGrad")(p, lr=1e-2, opt=_adam, seed=1), _rosen),
    Entry(
        "GradChain",
        lambda p: _t("GradChain")(p, [lambda q: torch.optim.SGD(q, lr=0.01, momentum=0.9), _adam]),
        _rosen,
    ),
    # wrappers that judge an inner optimizer's step by the loss
    Entry("UndoOnRise", lambda p: _t("UndoOnRise")(p, lambda q: torch.optim.Adam(q, lr=0.3)), _rosen),
    Entry(
        "UndoOnRise[opposite,restore_state]",
        lambda p: _t("UndoOnRise")(
            p, lambda q: torch.optim.SGD(q, lr=0.01, momentum=0.9), on_rise="opposite", restore_state=True, shrink=0.5
        ),
        _rosen,
    ),
    Entry(
        "BestOfLRs",
        lambda p: _t("BestOfLRs")(p, lambda q: torch.optim.SGD(q, lr=1e-3, momentum=0.5), multipliers=(0.5, 1, 4)),
        _rosen,
    ),
    Entry("MomentumToBest", lambda p: _t("MomentumToBest")(p, _adam, pull=0.2), _rosen),
    Entry(
        "MomentumToBest[SPSA]",
        lambda p: _t("MomentumToBest")(p, _t("SPSA")(h=1e-3, seed=1, opt=_adam), pull=0.3),
        _rosen,
    ),
    # searches, walks, populations
    Entry("RandomSearch", lambda p: _t("RandomSearch")(p, seed=1), _sphere),
    Entry("ShrinkingRandomSearch", lambda p: _t("ShrinkingRandomSearch")(p, nsteps=50, seed=1), _sphere),
    Entry("GridSearch", lambda p: _t("GridSearch")(p, bounds=(-1.0, 1.0), step=0.5), _sphere),
    Entry("SequentialSearch", lambda p: _t("SequentialSearch")(p, lr=0.5), _sphere),
    Entry("RandomWalk", lambda p: _t("RandomWalk")(p, lr=0.2, seed=1), _sphere),
    Entry("SecondOrderRandomWalk", lambda p: _t("SecondOrderRandomWalk")(p, lr=0.2, seed=1), _sphere),
    Entry("SimulatedAnnealing", lambda p: _t("SimulatedAnnealing")(p, lr=0.2, seed=1), _sphere),
    Entry("EvolutionStrategy", lambda p: _t("EvolutionStrategy")(p, n_parents=2, n_offspring=4, seed=1), _sphere),
    Entry("ParticleSwarm", lambda p: _t("ParticleSwarm")(p, n_particles=4, seed=1), _sphere),
    Entry(
        "SwarmOfOptimizers",
        lambda p: _t("SwarmOfOptimizers")(p, lambda q: _t("SPSA")(q, opt=_adam, seed=2), n=2, seed=1),
        _rosen,
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


def logging_closure(
    model: torch.nn.Module, zero_grad: Callable[[], None], log: list[torch.Tensor]
) -> Callable[..., torch.Tensor]:
    """A ``backward``-aware closure returning ``model()`` that appends the evaluated point to ``log``.

    Each entry of ``log`` is a float64 copy of all parameters, flattened and concatenated, so
    two runs can be compared evaluation by evaluation.

    Example:
        >>> model = entry("RandomSearch").problem()
        >>> log = []
        >>> _ = logging_closure(model, lambda: None, log)(backward=False)
        >>> log[0].tolist()
        [0.9, -0.4, 0.3]
    """
    inner = make_closure(model, zero_grad)

    def closure(backward: bool = True) -> torch.Tensor:
        log.append(torch.cat([p.detach().reshape(-1).to(torch.float64) for p in model.parameters()]))
        return inner(backward)

    return closure
