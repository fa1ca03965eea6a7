"""torchzero_bridge: fit PyTorch models with scipy, nevergrad, optuna and zeroth-order optimizers.

Example:
    >>> import torchzero_bridge as tzb
    >>> sorted(n for n in tzb.__all__ if n.endswith("Wrapper"))[:2]
    ['BasinHoppingWrapper', 'CMAESWrapper']
"""

from torchzero_bridge.cma import CMAESWrapper
from torchzero_bridge.core import BatchObjective, BridgeOptimizer, FlatParams, Objective, StopSolve
from torchzero_bridge.errors import (
    BridgeWarning,
    ClosureError,
    ConvergedWarning,
    FrozenParameterWarning,
    IgnoredOptionWarning,
    MissingGradientError,
    NonFiniteLossWarning,
    RunningStatsWarning,
)
from torchzero_bridge.nevergrad import NevergradWrapper
from torchzero_bridge.optuna import OptunaWrapper
from torchzero_bridge.scipy import (
    BasinHoppingWrapper,
    DifferentialEvolutionWrapper,
    DirectWrapper,
    DualAnnealingWrapper,
    MinimizeWrapper,
    SHGOWrapper,
    newton_cg_armijo,
)
from torchzero_bridge.zeroth_order import (
    AR1,
    FDM,
    RDSA,
    SPSA,
    AdaptiveOrderWalk,
    BestOfLRs,
    DerivativeFreeOptimizer,
    EvolutionStrategy,
    ForwardGradient,
    GaussianSmoothing,
    GradChain,
    GradientEstimator,
    GridSearch,
    MeZO,
    MomentumToBest,
    ParticleSwarm,
    RandomGrad,
    RandomizedFDM,
    RandomSearch,
    RandomWalk,
    SecondOrderRandomWalk,
    SequentialSearch,
    ShrinkingRandomSearch,
    SimulatedAnnealing,
    Smoothed,
    SwarmOfOptimizers,
    UndoOnRise,
)

__version__ = "0.1.0"

__all__ = [
    "AR1",
    "FDM",
    "RDSA",
    "SPSA",
    "AdaptiveOrderWalk",
    "BasinHoppingWrapper",
    "BatchObjective",
    "BestOfLRs",
    "BridgeOptimizer",
    "BridgeWarning",
    "CMAESWrapper",
    "ClosureError",
    "ConvergedWarning",
    "DerivativeFreeOptimizer",
    "DifferentialEvolutionWrapper",
    "DirectWrapper",
    "DualAnnealingWrapper",
    "EvolutionStrategy",
    "FlatParams",
    "ForwardGradient",
    "FrozenParameterWarning",
    "GaussianSmoothing",
    "GradChain",
    "GradientEstimator",
    "GridSearch",
    "IgnoredOptionWarning",
    "MeZO",
    "MinimizeWrapper",
    "MissingGradientError",
    "MomentumToBest",
    "NevergradWrapper",
    "NonFiniteLossWarning",
    "Objective",
    "OptunaWrapper",
    "ParticleSwarm",
    "RandomGrad",
    "RandomSearch",
    "RandomWalk",
    "RandomizedFDM",
    "RunningStatsWarning",
    "SHGOWrapper",
    "SecondOrderRandomWalk",
    "SequentialSearch",
    "ShrinkingRandomSearch",
    "SimulatedAnnealing",
    "Smoothed",
    "StopSolve",
    "SwarmOfOptimizers",
    "UndoOnRise",
    "__version__",
    "newton_cg_armijo",
]
