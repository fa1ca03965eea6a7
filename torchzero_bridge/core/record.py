"""EvalRecord: the one record of a run's evaluations, used by every solver family.

What every optimizer must do with each loss the closure returns lives here and nowhere else:

* **counting**: ``nfev`` (closure runs), ``ngev``/``nhev`` (gradients and Hessian products a
  solver asked for) and ``n_nonfinite``;
* **the non-finite policy**: a NaN or infinite loss gives one
  :class:`~torchzero_bridge.errors.NonFiniteLossWarning` per record and is then handed on as
  ``+inf`` (``"inf"``, default), raised as ``FloatingPointError`` (``"raise"``) or passed
  through (``"pass"``); a non-finite point is never the best one. Optimizers that do not step
  to a point but estimate a gradient warn once per step instead (:func:`warn_nonfinite_step`);
* **the best finite point** (``best_x``/``best_f``; strict improvement, or ties on request);
* **the deadline** (:class:`StopSolve` once the timeout has passed);
* **progress** (``on_eval``/``on_evals`` hooks) and whether the start point was evaluated;
* **restore on error**: :meth:`EvalRecord.restore` writes the best point (or the start)
  back after an error or interrupt.

The numbers live in a plain dict (:attr:`EvalRecord.state`, keys ``best_x``, ``best_f``,
``nfev``), so an optimizer can keep that dict in its own ``state`` and save it as it is.

Example:
    >>> from torchzero_bridge.core.record import EvalRecord
    >>> rec = EvalRecord()
    >>> rec.add("a", 3.0), rec.add("b", 1.0), rec.add("c", 2.0)
    ((3.0, True), (1.0, True), (2.0, False))
    >>> rec.best_x, rec.best_f, rec.nfev
    ('b', 1.0, 3)
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from torchzero_bridge._warn import warn_user
from torchzero_bridge.errors import NonFiniteLossWarning

__all__ = [
    "NONFINITE_POLICIES",
    "EvalRecord",
    "NonFinitePolicy",
    "StopSolve",
    "keeps_grad_mode",
    "new_state",
    "warn_nonfinite",
    "warn_nonfinite_step",
]

NONFINITE_POLICIES = ("inf", "raise", "pass")
NonFinitePolicy = Literal["inf", "raise", "pass"]


class StopSolve(Exception):
    """Raised inside a solve to end it cleanly (timeout, a callback asking to stop).

    Args:
        reason: the message put into ``result.message``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_state() -> dict[str, Any]:
    """A fresh record state: no best point, no evaluation.

    Example:
        >>> new_state()
        {'best_x': None, 'best_f': inf, 'nfev': 0}
    """
    return {"best_x": None, "best_f": math.inf, "nfev": 0}


def keeps_grad_mode(step: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an optimizer's ``step`` so that an error or interrupt leaves autograd's mode as the step found it.

    A ``KeyboardInterrupt`` that lands inside ``torch.no_grad().__exit__`` (Python code) would
    otherwise leave gradients switched off for the rest of the session.

    Example:
        >>> import torch
        >>> def step(self):
        ...     torch.set_grad_enabled(False)
        ...     raise KeyboardInterrupt
        >>> try:
        ...     keeps_grad_mode(step)(None)
        ... except KeyboardInterrupt:
        ...     pass
        >>> torch.is_grad_enabled()
        True
    """
    if getattr(step, "_keeps_grad_mode", False):
        return step

    @functools.wraps(step)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        mode = torch.is_grad_enabled()
        try:
            return step(self, *args, **kwargs)
        except BaseException:
            torch.set_grad_enabled(mode)
            raise

    guarded._keeps_grad_mode = True  # type: ignore[attr-defined]
    return guarded


def warn_nonfinite(message: str) -> None:
    """Raise ``message`` as a :class:`~torchzero_bridge.errors.NonFiniteLossWarning` at the user's line.

    The one place this warning is issued (the policy's warning, the per-step one of gradient
    estimators, a chain's skipped stages).
    """
    warn_user(message, NonFiniteLossWarning)


def warn_nonfinite_step(owner: str, count: int, consequence: str = "no update was applied") -> None:
    """Warn that ``count`` evaluations of this step returned a non-finite loss (gradient estimators).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as w:
        ...     warnings.simplefilter("always")
        ...     warn_nonfinite_step("SPSA", 2)
        >>> "SPSA: the closure returned a non-finite loss in 2 evaluation(s)" in str(w[0].message)
        True
    """
    warn_nonfinite(
        f"{owner}: the closure returned a non-finite loss in {count} evaluation(s) of this step; the "
        f"estimate is not trustworthy, so {consequence}"
    )


class EvalRecord:
    """Counters, best finite point, non-finite policy, deadline and progress of one run.

    Args:
        owner: prefix of the warning (``"RandomWalk"``); empty for the scipy-facing objective.
        nonfinite: ``"inf"``, ``"raise"`` or ``"pass"`` (see the module docstring).
        deadline: ``time.perf_counter()`` value after which :meth:`check_deadline` raises.
        timeout: the timeout in seconds, for the :class:`StopSolve` message.
        on_eval: called with each loss as the solver sees it.
        on_evals: called once with all the (finite) losses of a batched evaluation.
        start: the start point; :attr:`start_seen` turns ``True`` once a point within ``1e-12``
            (relative to its largest magnitude) of it is added (solvers that map the start
            through their own scaling evaluate it up to rounding).
        state: the dict the numbers live in (a fresh :func:`new_state` by default).
        quiet: the owner reports non-finite losses itself, once per step
            (:func:`warn_nonfinite_step`); the record only counts them.

    Attributes:
        ngev: gradients a solver asked for.
        nhev: Hessian(-vector) products a solver asked for.
        n_nonfinite: non-finite losses seen.
        start_seen: whether the start point was evaluated (only tracked with ``start``).

    Raises:
        ValueError: unknown ``nonfinite``.
    """

    def __init__(
        self,
        owner: str = "",
        *,
        nonfinite: NonFinitePolicy = "inf",
        deadline: float | None = None,
        timeout: float | None = None,
        on_eval: Callable[[float], None] | None = None,
        on_evals: Callable[[np.ndarray], None] | None = None,
        start: np.ndarray | None = None,
        state: dict[str, Any] | None = None,
        quiet: bool = False,
    ) -> None:
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite: expected one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        self.owner = owner
        self.nonfinite: NonFinitePolicy = nonfinite
        self.deadline = deadline
        self.timeout = timeout
        self.on_eval = on_eval
        self.on_evals = on_evals
        self.state: dict[str, Any] = new_state() if state is None else state
        self.ngev = 0
        self.nhev = 0
        self.n_nonfinite = 0
        self._warned = quiet
        self._start = None if start is None or start.size == 0 else start
        self.start_seen = start is not None and start.size == 0
        self._watching = self._start is not None  # until the start is seen
        if self._start is not None:
            self._first = self._start.item(0)
            self._tol = 1e-12 * max(1.0, float(np.max(np.abs(self._start))))

    # ------------------------------------------------------------------ numbers
    @property
    def nfev(self) -> int:
        """Closure runs so far (every row of a batched evaluation counts)."""
        return int(self.state["nfev"])

    @nfev.setter
    def nfev(self, value: int) -> None:
        self.state["nfev"] = value

    @property
    def best_x(self) -> Any:
        """The best finite point added (``None`` before any finite loss)."""
        return self.state["best_x"]

    @property
    def best_f(self) -> float:
        """The loss at :attr:`best_x` (``inf`` before any finite loss)."""
        return float(self.state["best_f"])

    def attach(self, state: dict[str, Any]) -> None:
        """Keep the numbers in ``state`` from now on (an optimizer's saved state, replaced by a load)."""
        self.state = state

    # ------------------------------------------------------------------ evaluations
    def add(self, x: Any, f: float, *, keep: Any = None, ties: bool = False) -> tuple[float, bool]:
        """Record one closure run at ``x`` with loss ``f``.

        Counts it, applies the non-finite policy, keeps ``keep`` (default ``x``, not copied)
        as the best point when ``f`` is the best finite loss so far (``ties``: an equal loss
        also replaces it), checks ``x`` against the start point and calls ``on_eval``.

        Returns:
            ``(loss the solver sees, whether the point became the best one)``.

        Raises:
            FloatingPointError: a non-finite loss with ``nonfinite="raise"``.
        """
        st = self.state
        st["nfev"] += 1
        better = False
        if not math.isfinite(f):
            f = self.treat(f)
        elif f < st["best_f"] or (ties and f == st["best_f"]):
            st["best_x"], st["best_f"] = (x if keep is None else keep), f
            better = True
        if self._watching:
            self._watch(x)
        if self.on_eval is not None:
            self.on_eval(f)
        return f, better

    def add_many(self, f: np.ndarray, row: Callable[[int], Any], *, ties: bool = False) -> int:
        """Record a batched evaluation: ``f[i]`` is the loss of row ``i``; non-finite entries are treated in place.

        ``row(i)`` gives the point to keep when row ``i`` becomes the best one (the first of
        equal losses; the last with ``ties``). Progress gets one ``on_evals`` call when every
        loss is finite (and ``on_evals`` is set or ``on_eval`` is not), else one ``on_eval`` per
        row. Rows are not checked against the start point.

        Returns:
            The index of the row that became the best point, or ``-1``.
        """
        n = len(f)
        self.state["nfev"] += n
        if not n:
            return -1
        finite = np.isfinite(f)
        if bool(finite.all()) and (self.on_eval is None or self.on_evals is not None):
            if self.on_evals is not None:
                self.on_evals(f)
        else:
            for i in np.flatnonzero(~finite).tolist():
                f[i] = self.treat(float(f[i]))
            if self.on_eval is not None:
                for v in f.tolist():
                    self.on_eval(v)
        masked = np.where(finite, f, math.inf)
        i = int(np.argmin(masked))
        if ties:
            i = int(np.flatnonzero(masked == masked[i])[-1])
        fi = float(masked[i])
        if self.improves(fi, ties=ties):
            self.keep(row(i), fi)
            return i
        return -1

    def count(self, f: float) -> float:
        """Count one closure run whose point is not offered as the best (apply the policy); return the loss seen."""
        self.state["nfev"] += 1
        return self.seen(f)

    def seen(self, f: float) -> float:
        """The loss the solver sees for a run already counted: ``f``, or the policy's answer when not finite."""
        return f if math.isfinite(f) else self.treat(f)

    def improves(self, f: float, *, ties: bool = False) -> bool:
        """Whether a finite loss ``f`` would replace the best point (strictly better, or equal with ``ties``)."""
        b = self.state["best_f"]
        return math.isfinite(f) and (f < b or (ties and f == b))

    def keep(self, x: Any, f: float) -> None:
        """Make ``x`` (not copied) the best point, with loss ``f``."""
        st = self.state
        st["best_x"], st["best_f"] = x, f

    def treat(self, f: float) -> float:
        """Apply the non-finite policy to a non-finite ``f``: count, warn once, then inf / raise / pass."""
        self.n_nonfinite += 1
        if not self._warned:
            self._warned = True
            who = f"{self.owner}: " if self.owner else ""
            warn_nonfinite(
                f"{who}the closure returned a non-finite loss ({f}); such points are never kept as the "
                f"answer (nonfinite={self.nonfinite!r})"
            )
        if self.nonfinite == "raise":
            raise FloatingPointError(f"the closure returned a non-finite loss ({f})")
        return math.inf if self.nonfinite == "inf" else f

    def worst_if_nonfinite(self, f: float) -> float:
        """``f``, or ``+inf`` when it is not finite: how a trial's loss ranks when it is only compared."""
        return f if math.isfinite(f) else math.inf

    def treat_gradient(self, g: np.ndarray | None) -> np.ndarray | None:
        """The gradient a solver sees at a point of non-finite loss: zeros under ``"inf"``, else ``g``."""
        if g is None or self.nonfinite != "inf":
            return g
        return np.zeros_like(g)

    def check_deadline(self) -> None:
        """Raise :class:`StopSolve` once the timeout has passed."""
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise StopSolve(f"timeout: stopped after {self.timeout} s")

    # ------------------------------------------------------------------ restore
    def restore(self, write: Callable[[Any], None], start: Any = None) -> None:
        """After an error or interrupt: ``write`` the best point, or ``start`` when there is none (then re-raise).

        Called from an ``except BaseException:`` block (a plain ``try`` costs nothing per step).

        Example:
            >>> rec, written = EvalRecord(), []
            >>> _ = rec.add("good", 1.0)
            >>> try:
            ...     try:
            ...         raise KeyboardInterrupt
            ...     except BaseException:
            ...         rec.restore(written.append, start="x0")
            ...         raise
            ... except KeyboardInterrupt:
            ...     pass
            >>> written
            ['good']
        """
        x = self.state["best_x"]
        if x is None:
            x = start
        if x is not None:
            write(x)

    # ------------------------------------------------------------------ internals
    def _watch(self, x: Any) -> None:
        s = self._start
        assert s is not None
        if isinstance(x, np.ndarray) and x.shape == s.shape:
            if abs(x.item(0) - self._first) <= self._tol and float(np.max(np.abs(x - s))) <= self._tol:
                self.start_seen = True
                self._watching = False
