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
