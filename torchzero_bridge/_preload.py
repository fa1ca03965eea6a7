"""Import at construction what a solver would otherwise import lazily inside its first step.

An import interrupted by ``KeyboardInterrupt`` (a SIGINT while the first ``step`` runs) can
leave a package half-initialised in ``sys.modules``, and every later step then fails. So the
modules a step is known to import on first use are imported when the optimizer is built:
``scipy.stats`` for SHGO's sampling, ``cma`` (and with it matplotlib) for nevergrad's CMA-ES,
scikit-learn's regressions for nevergrad's meta-models (which its selectors such as ``NGOpt``
may pick), ``threadpoolctl`` for the thread limit every scipy-side step applies.

Example:
    >>> preload("json", "no_such_module_here")
    >>> import sys
    >>> "json" in sys.modules
    True
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["NEVERGRAD_CMA_FAMILIES", "NEVERGRAD_SELECTORS", "nevergrad_step_imports", "preload"]

NEVERGRAD_SELECTORS = ("NGOpt", "NgIoh", "NgDS", "NGDS", "Shiwa", "Carola", "MetaModel", "Wiz", "Portfolio")
"""Name prefixes of nevergrad optimizers that may run a meta-model (scikit-learn regressions)."""

NEVERGRAD_CMA_FAMILIES = (
    "NGOpt",
    "NgIoh",
    "NgDS",
    "NGDS",
    "Shiwa",
    "Carola",
    "MetaModel",
    "Wiz",
    "Portfolio",
    "ParaPortfolio",
    "Multi",
    "Polygon",
    "CM",
)
"""Name prefixes of nevergrad optimizers that run CMA-ES or may pick it (the selectors)."""


def preload(*modules: str) -> None:
    """Import each of ``modules`` now; a module that is not installed is skipped.

    Example:
        >>> preload("math")
    """
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def nevergrad_step_imports(optimizer_name: str) -> tuple[str, ...]:
    """The modules nevergrad imports inside the first ``ask`` of optimizer ``optimizer_name``.

    Example:
        >>> nevergrad_step_imports("CMA"), nevergrad_step_imports("OnePlusOne")
        (('cma',), ())
    """
    modules: tuple[str, ...] = ()
    if "CMA" in optimizer_name.upper() or optimizer_name.startswith(NEVERGRAD_CMA_FAMILIES):
        modules += ("cma",)
    if optimizer_name.startswith(NEVERGRAD_SELECTORS):
        modules += ("sklearn.preprocessing", "sklearn.linear_model")
    return modules
