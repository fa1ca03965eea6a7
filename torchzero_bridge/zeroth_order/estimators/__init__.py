"""Zeroth-order gradient estimators: FDM, RandomizedFDM, SPSA, RDSA, GaussianSmoothing, MeZO, ForwardGradient.

Example:
    >>> from torchzero_bridge.zeroth_order.estimators import FDM
    >>> FDM(formula="forward2").formula.evaluations(10)
    11
"""

from torchzero_bridge.zeroth_order.estimators.base import GradientEstimator
from torchzero_bridge.zeroth_order.estimators.fdm import FDM
from torchzero_bridge.zeroth_order.estimators.formulas import FORMULAS
from torchzero_bridge.zeroth_order.estimators.forward import ForwardGradient
from torchzero_bridge.zeroth_order.estimators.mezo import MeZO
from torchzero_bridge.zeroth_order.estimators.randomized import RDSA, SPSA, GaussianSmoothing, RandomizedFDM

__all__ = [
    "FDM",
    "FORMULAS",
    "RDSA",
    "SPSA",
    "ForwardGradient",
    "GaussianSmoothing",
    "GradientEstimator",
    "MeZO",
    "RandomizedFDM",
]
