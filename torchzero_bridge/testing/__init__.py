"""Reference problems with known minima and helpers for contract tests."""

from torchzero_bridge.testing.problems import Rosenbrock, make_closure, make_rosenbrock_closure

__all__ = ["Rosenbrock", "make_closure", "make_rosenbrock_closure"]
