"""Native torch zeroth-order optimizers (gradient estimators, random search, populations).

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import SPSA
    >>> w = torch.zeros(3, requires_grad=True)
    >>> opt = SPSA([w], h=1e-3, seed=0, opt=lambda p: torch.optim.Adam(p, lr=0.1))
    >>> loss = opt.step(lambda backward=True: ((w - 1) ** 2).sum())
    >>> opt.nfev
    2
"""

from torchzero_bridge.zeroth_order.adaptive_walk import AdaptiveOrderWalk
from torchzero_bridge.zeroth_order.annealing import SimulatedAnnealing
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer
from torchzero_bridge.zeroth_order.directions import DISTRIBUTIONS
from torchzero_bridge.zeroth_order.ensemble_kalman import EnsembleKalmanInversion
from torchzero_bridge.zeroth_order.estimators import (
    FDM,
    FORMULAS,
    RDSA,
    SPSA,
    ForwardGradient,
    GaussianSmoothing,
    GradientEstimator,
    MeZO,
    RandomizedFDM,
)
from torchzero_bridge.zeroth_order.grad_chain import GradChain
from torchzero_bridge.zeroth_order.initializers import FittedInit, Initializer, ModuleInit, PerturbInit
from torchzero_bridge.zeroth_order.population import EvolutionStrategy, ParticleSwarm
from torchzero_bridge.zeroth_order.random_grad import RandomGrad
from torchzero_bridge.zeroth_order.schedules import GeometricGrowth, LinearGrowth
from torchzero_bridge.zeroth_order.search import GridSearch, RandomSearch, SequentialSearch, ShrinkingRandomSearch
from torchzero_bridge.zeroth_order.several_lr import BestOfLRs
from torchzero_bridge.zeroth_order.smooth_directions import AR1, Smoothed
from torchzero_bridge.zeroth_order.swarm import SwarmOfOptimizers
from torchzero_bridge.zeroth_order.toward_best import MomentumToBest
from torchzero_bridge.zeroth_order.undo import UndoOnRise
from torchzero_bridge.zeroth_order.walks import RandomWalk, SecondOrderRandomWalk

__all__ = [
    "AR1",
    "DISTRIBUTIONS",
    "FDM",
    "FORMULAS",
    "RDSA",
    "SPSA",
    "AdaptiveOrderWalk",
    "BestOfLRs",
    "DerivativeFreeOptimizer",
    "EnsembleKalmanInversion",
    "EvolutionStrategy",
    "FittedInit",
    "ForwardGradient",
    "GaussianSmoothing",
    "GeometricGrowth",
    "GradChain",
    "GradientEstimator",
    "GridSearch",
    "Initializer",
    "LinearGrowth",
    "MeZO",
    "ModuleInit",
    "MomentumToBest",
    "ParticleSwarm",
    "PerturbInit",
    "RandomGrad",
    "RandomSearch",
    "RandomWalk",
    "RandomizedFDM",
    "SecondOrderRandomWalk",
    "SequentialSearch",
    "ShrinkingRandomSearch",
    "SimulatedAnnealing",
    "Smoothed",
    "SwarmOfOptimizers",
    "UndoOnRise",
]
