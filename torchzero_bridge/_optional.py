"""Import an optional dependency on first use, with an error that names the extra to install.

Example:
    >>> from torchzero_bridge._optional import import_extra
    >>> np = import_extra("numpy", extra="core", owner="this example")
    >>> np.__name__
    'numpy'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_extra"]


def import_extra(module: str, *, extra: str, owner: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` telling which extra provides it.

    Args:
        module: the top-level module to import (``"nevergrad"``, ``"optuna"``).
        extra: the ``torchzero_bridge`` extra that installs it.
        owner: what needs it (named in the error).

    Raises:
        ImportError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{owner} needs the optional package {module!r}, which is not installed: "
            f"pip install torchzero_bridge[{extra}]"
        ) from e
