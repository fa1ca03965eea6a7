"""Wrappers around ``scipy.optimize`` entry points, one thin module each."""

from torchzero_bridge.scipy.minimize import MinimizeWrapper

__all__ = ["MinimizeWrapper"]
