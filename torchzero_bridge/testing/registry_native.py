"""Registry rows of the native torch optimizers.

Gradient estimators, step-judging wrappers, searches, walks and populations; the rows of the
external-solver wrappers and the lookups are in :mod:`torchzero_bridge.testing.registry`.
"""

from __future__ import annotations

import torch

from torchzero_bridge.testing.entry import Entry
from torchzero_bridge.testing.registry_parts import (
    _DFO,
    _ESTIMATOR,
    _adam,
    _boxed,
    _only,
    _rosen,
    _sphere,
    _t,
)

NATIVE_ENTRIES: list[Entry] = [
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
    Entry(  # directions per step grow 1, 2, 3, 4 (closure runs 2, 4, 6, 8); Gaussian: no point repeats
        "RDSA[n_samples_schedule]",
        lambda p: _t("RDSA")(p, n_samples_schedule="linear", opt=_adam, seed=1),
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
    # members drawn by a fitted per-tensor distribution instead of the start plus noise
    Entry(
        "ParticleSwarm[init=fitted]",
        lambda p: _t("ParticleSwarm")(p, n_particles=4, init="fitted", seed=1),
        _sphere,
        batching=True,
        **_DFO,
    ),
    Entry(
        "EvolutionStrategy[init=fitted]",
        lambda p: _t("EvolutionStrategy")(p, n_parents=2, n_offspring=4, init="fitted", seed=1),
        _sphere,
        integers=True,
        batching=True,
        **_DFO,
    ),
    Entry(
        "EnsembleKalmanInversion[init=fitted]",
        lambda p: _t("EnsembleKalmanInversion")(p, n_particles=4, step_size=10.0, init="fitted", seed=1),
        _sphere,
        batching=True,
        **_DFO,
    ),
    Entry(
        "SwarmOfOptimizers[init=fitted]",
        lambda p: _t("SwarmOfOptimizers")(p, lambda q: _t("SPSA")(q, opt=_adam, seed=2), n=2, init="fitted", seed=1),
        _rosen,
        **_DFO,
    ),
    Entry(  # gradient members that breed: children inherit swapped Adam state and mutated lr/betas
        "SwarmOfOptimizers[breed]",
        lambda p: _t("SwarmOfOptimizers")(
            p, _adam, n=3, patience=1, state_crossover="swap", mutate=True, reset_state=("exp_avg",), seed=1
        ),
        _rosen,
        gradient=True,
        **_DFO,
    ),
    Entry(  # one birth per step, a child of the best two with their averaged Adam state
        "SwarmOfOptimizers[size_schedule]",
        lambda p: _t("SwarmOfOptimizers")(
            p, _adam, n=2, patience=100, state_crossover="average", size_schedule="linear", seed=1
        ),
        _rosen,
        gradient=True,
        **_DFO,
    ),
]
