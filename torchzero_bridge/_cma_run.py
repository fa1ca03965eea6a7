"""One CMA-ES run over the ``cma`` package: ask/tell, IPOP restarts, its own numpy random state, replay.

``cma`` draws its samples from numpy's global random state (its ``seed`` option calls
``np.random.seed``). :class:`CMARun` swaps that global state in only while ``cma`` runs, so the
caller's numpy random numbers and the run's samples never disturb each other, and a run with
the same seed draws the same samples as a plain ``cma.CMAEvolutionStrategy`` loop.

Restarts follow ``cma.fmin``'s IPOP scheme: when the strategy stops (one of ``cma``'s
termination criteria), a new one starts from the same ``x0`` and ``sigma0`` with the population
size multiplied by ``incpopsize`` and the seed increased by one; the evaluation count carries
over (``verb_append``).

Example:
    >>> import numpy as np
    >>> from torchzero_bridge._cma_run import CMARun
    >>> run = CMARun(np.zeros(2), 0.5, {}, seed=1, restarts=0, incpopsize=2.0)
    >>> X = run.ask()
    >>> run.tell(X, ((X - 0.3) ** 2).sum(axis=1))
    >>> run.countevals, X.shape
    (6, (6, 2))
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from torchzero_bridge._optional import import_extra

__all__ = ["QUIET", "CMARun", "cma_module"]

QUIET: dict[str, Any] = {"verbose": -9, "verb_log": 0, "verb_disp": 0, "signals_filename": ""}
"""Options that keep ``cma`` from printing, writing log files or reading a signals file."""


def cma_module() -> Any:
    """The ``cma`` package, or an ``ImportError`` naming the extra that installs it."""
    return import_extra("cma", extra="cma", owner="CMAESWrapper")


class CMARun:
    """A ``cma.CMAEvolutionStrategy`` with IPOP restarts and a private numpy random state.

    Args:
        x0: the start point (float64 vector, inside the bounds).
        sigma0: the initial step size.
        options: ``cma`` options (``seed`` and the quiet options are set here).
        seed: ``cma``'s ``seed`` option of the first run (each restart adds one).
        restarts: how many times a stopped strategy is restarted.
        incpopsize: population size factor of each restart.

    Attributes:
        es: the current ``cma.CMAEvolutionStrategy``.
        irun: index of the current run (0 before any restart).
        told: the losses told so far, in order (what :meth:`replay` needs).
    """

    def __init__(
        self, x0: np.ndarray, sigma0: float, options: dict[str, Any], *, seed: int, restarts: int, incpopsize: float
    ) -> None:
        self._cma = cma_module()
        self.x0 = np.array(x0, dtype=np.float64)
        self.sigma0 = float(sigma0)
        self.seed = int(seed)
        self.restarts = restarts
        self.incpopsize = incpopsize
        self.irun = 0
        self.told: list[float] = []
        self._rng_state: Any = np.random.RandomState(0).get_state()
        self.es: Any = self._new_es({**options, **QUIET, "seed": self.seed})

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """numpy's global random state is the run's while ``cma`` runs; ``cma``'s inf-bound noise is muted."""
        outer = np.random.get_state()
        np.random.set_state(self._rng_state)
        try:
            with warnings.catch_warnings():
                # integer variables with an infinite bound: cma takes np.mod(inf, 1) (NaN, harmless)
                warnings.filterwarnings("ignore", "invalid value encountered in remainder", RuntimeWarning)
                yield
        finally:
            self._rng_state = np.random.get_state()
            np.random.set_state(outer)

    def _new_es(self, opts: dict[str, Any]) -> Any:
        with self._own_rng():
            return self._cma.CMAEvolutionStrategy(self.x0.copy(), self.sigma0, opts)

    @property
    def countevals(self) -> int:
        """Evaluations told over all runs."""
        return int(self.es.countevals)

    def stopped(self) -> dict[str, Any]:
        """``cma``'s termination conditions met by the current strategy (empty while it runs)."""
        with self._own_rng():
            return dict(self.es.stop())

    def ask(self) -> np.ndarray | None:
        """The next generation as a ``(popsize, n)`` array; ``None`` when stopped with no restart left.

        A stopped strategy is first replaced by its restart, as ``cma.fmin`` does.
        """
        if self.stopped():
            if self.irun >= self.restarts:
                return None
            self.irun += 1
            opts = dict(self.es.opts)
            opts.update(
                popsize=self.incpopsize * self.es.sp.popsize, seed=self.seed + self.irun, verb_append=self.countevals
            )
            self.es = self._new_es(opts)
        with self._own_rng():
            return np.array(self.es.ask(), dtype=np.float64)

    def tell(self, X: np.ndarray, losses: np.ndarray | list[float]) -> None:
        """Tell the losses of the generation ``X`` (non-finite losses are told as ``inf``)."""
        f = np.asarray(losses, dtype=np.float64).copy()
        f[~np.isfinite(f)] = np.inf
        with self._own_rng():
            self.es.tell(list(X), f.tolist())
        self.told.extend(np.asarray(losses, dtype=np.float64).tolist())

    def mean(self) -> np.ndarray:
        """The current strategy's mean (a copy)."""
        return np.array(self.es.mean, dtype=np.float64)

    def replay(self, losses: np.ndarray) -> np.ndarray | None:
        """Re-run the generations whose losses are ``losses``; returns the unfinished generation, if any.

        The strategy must be freshly built with the saved seed, ``x0`` and options. A trailing
        part of ``losses`` shorter than a generation is not told: the generation is returned so
        that the caller can evaluate the rest of it.
        """
        k = 0
        while k < len(losses):
            X = self.ask()
            if X is None:
                raise RuntimeError("load_state_dict: the replayed CMA-ES run stopped before its saved history ended")
            if k + len(X) > len(losses):
                return X
            self.tell(X, losses[k : k + len(X)])
            k += len(X)
        return None
