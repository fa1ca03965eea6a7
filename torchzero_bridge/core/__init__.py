"""The shared core: the layout, the flat exchange vectors, the memoized objective and the optimizer base class."""

from torchzero_bridge.core.base import BridgeOptimizer, SolveContext
from torchzero_bridge.core.batch import BatchObjective
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.layout import Layout
from torchzero_bridge.core.objective import Objective, StopSolve

__all__ = ["BatchObjective", "BridgeOptimizer", "FlatParams", "Layout", "Objective", "SolveContext", "StopSolve"]
