"""Wrappers around ``scipy.optimize`` entry points, one thin module each."""

from torchzero_bridge.scipy.basinhopping import BasinHoppingWrapper
from torchzero_bridge.scipy.differential_evolution import DifferentialEvolutionWrapper
from torchzero_bridge.scipy.direct import DirectWrapper
from torchzero_bridge.scipy.dual_annealing import DualAnnealingWrapper
from torchzero_bridge.scipy.minimize import MinimizeWrapper
from torchzero_bridge.scipy.newton import newton_cg_armijo
from torchzero_bridge.scipy.shgo import SHGOWrapper

__all__ = [
    "BasinHoppingWrapper",
    "DifferentialEvolutionWrapper",
    "DirectWrapper",
    "DualAnnealingWrapper",
    "MinimizeWrapper",
    "SHGOWrapper",
    "newton_cg_armijo",
]
