"""Native torch zeroth-order optimizers (gradient estimators, random search, populations)."""

from torchzero_bridge.zeroth_order.directions import DISTRIBUTIONS
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
from torchzero_bridge.zeroth_order.random_grad import RandomGrad

__all__ = [
    "DISTRIBUTIONS",
    "FDM",
    "FORMULAS",
    "RDSA",
    "SPSA",
    "ForwardGradient",
    "GaussianSmoothing",
    "GradChain",
    "GradientEstimator",
    "MeZO",
    "RandomGrad",
    "RandomizedFDM",
]
