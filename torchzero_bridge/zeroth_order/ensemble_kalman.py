"""Ensemble Kalman inversion (EKI): an ensemble of particles whose spread stands in for the gradient.

Each step evaluates the forward map ``G`` at every particle ``theta_j`` and moves every particle by
the Kalman update (Schillings & Stuart 2017; Kovachki & Stuart 2019 for neural networks)::

    theta_j <- theta_j + h C^{theta G} (h C^{GG} + Gamma)^{-1} (y_j - G(theta_j))

with the ensemble covariances ``C^{theta G}`` and ``C^{GG}`` (divided by ``J``), the observation
noise covariance ``Gamma`` and the step size ``h``. Without noise (``randomize=None``) ``y_j = y``;
``randomize="step"`` perturbs the observations every step: ``y_j = y + eta_j`` with
``eta_j ~ N(0, Gamma / h)``, since the update is a Kalman step with observation noise ``Gamma / h``
(the discretized stochastic EKI flow); ``randomize="epoch"`` keeps ``y_j = y`` and, at the end of
every epoch of ``epoch_steps`` steps, draws the ensemble afresh around its mean
(``mean + init_std * N(0, I)``).

The forward map comes in one of two forms:

* **scalar** (default): ``G(theta)`` is the closure's loss and ``y`` is ``target`` (0): EKI as a
  derivative-free minimizer of any non-negative loss. A :class:`~torchzero_bridge.BatchObjective`
  closure, or ``executor=``, evaluates the whole ensemble in one call.
* **vector**: ``forward=`` is a callable that returns the predictions ``G(theta)`` (any shape, flattened)
  at the parameters' current values, ``target`` holds the data ``y``; the loss the optimizer
  minimizes is the misfit ``0.5 (y - G)^T Gamma^{-1} (y - G)``, computed from the same call, so
  ``step()`` takes no closure. Particles are evaluated one at a time.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import EnsembleKalmanInversion
    >>> A, y = torch.tensor([[1.0, 2.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([1.0, 2.0, 3.0])
    >>> w = torch.zeros(2)
    >>> opt = EnsembleKalmanInversion([w], n_particles=8, forward=lambda: A @ w, target=y, step_size=1e3, seed=0)
    >>> for _ in range(30):
    ...     loss = opt.step()
    >>> solution = torch.linalg.lstsq(A.double(), y.double()[:, None]).solution[:, 0]
    >>> bool(torch.allclose(opt.ensemble_mean, solution, atol=1e-2))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from torchzero_bridge._checks import check_int, check_positive
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.core.remote import check_executor
from torchzero_bridge.zeroth_order.dfo_base import DerivativeFreeOptimizer, warn_ignored
from torchzero_bridge.zeroth_order.initializers import InitSpec, PerturbInit, draw_population, resolve_init
from torchzero_bridge.zeroth_order.schedules import SizeSchedule, resolve_size_schedule

__all__ = ["RANDOMIZE", "EnsembleKalmanInversion"]

RANDOMIZE = (None, "step", "epoch")


class EnsembleKalmanInversion(DerivativeFreeOptimizer):
    """Ensemble Kalman inversion over the parameters (see the module docstring for the update).

    The ensemble is drawn by ``init`` (default ``"perturb"``: ``start + init_std * N(0, I)``),
    clipped to the bounds, with particle 0 at the current parameters. Each step evaluates every
    particle (``J`` evaluations) and then applies the Kalman update, so the moved ensemble is
    evaluated by the next step. The parameters hold the best particle evaluated so far (as for
    every derivative-free optimizer here); the ensemble mean, EKI's estimate, is :attr:`ensemble_mean`.

    Args:
        params: iterable of tensors or of param-group dicts (per-group ``bounds``).
        n_particles: ensemble size ``J`` (at least 2). With ``n_particles <= n`` the particles
            stay in the affine span of the initial ensemble (EKI's subspace property).
        forward: ``forward() -> Tensor``, the predictions at the parameters' current values
            (vector form); ``None`` uses the closure's loss as a scalar forward map.
        target: the data ``y``: a number or a tensor shaped like ``forward()``'s result (default 0).
        noise: ``Gamma``: a positive number (``noise * I``), a 1-D tensor (diagonal) or a 2-D
            symmetric positive definite tensor. A diagonal noise with more predictions ``m`` than
            particles costs one ``(J, J)`` solve per step; a full matrix one ``(m, m)`` solve.
        step_size: ``h``; larger steps move further per step (``h -> inf`` is a Gauss-Newton-like
            step within the ensemble's span).
        randomize: ``None`` (deterministic EKI), ``"step"`` (perturbed observations each step) or
            ``"epoch"`` (draw the ensemble afresh around its mean every ``epoch_steps`` steps).
        epoch_steps: steps per epoch for ``randomize="epoch"`` (default 10).
        init_std: spread of the initial (and re-randomized, and added) particles.
        init: how the initial and added particles are drawn: ``"perturb"`` (default), ``"fitted"``,
            a :class:`~torchzero_bridge.zeroth_order.ModuleInit`, a module, or ``f(count, generator)``
            returning a ``(count, n)`` tensor (see :mod:`~torchzero_bridge.zeroth_order.initializers`).
            The ``randomize="epoch"`` redraw is part of the method and stays ``mean + init_std * N(0, I)``.
        size_schedule: grow the ensemble over the steps: ``None`` (fixed), ``"linear"``,
            ``"geometric"`` or any callable of the step index (see
            :func:`~torchzero_bridge.zeroth_order.schedules.resolve_size_schedule`). Added particles
            are drawn by ``init`` around the current ensemble mean (default ``mean + init_std * N(0, I)``).
        bounds: per-group ``(lo, hi)``; moved particles are clipped to them.
        seed: seed of the optimizer's random generator.
        generator: a ``torch.Generator`` to use instead of ``seed``.
        executor: a ``concurrent.futures.Executor`` or ``dask.distributed.Client`` that evaluates
            the ensemble (scalar form only).

    Raises:
        ValueError: ``n_particles < 2``, non-positive ``noise``/``step_size``/``init_std``, unknown
            ``randomize`` or ``init``, a ``target``/``noise`` whose size does not match ``forward()``.
        TypeError: ``forward`` not callable, integer or boolean tensors, an ``init`` that is not an initializer.

    Example:
        >>> import torch
        >>> w = torch.tensor([2.0, -1.0])
        >>> opt = EnsembleKalmanInversion([w], n_particles=10, step_size=10.0, randomize="step", seed=0)
        >>> for _ in range(40):
        ...     loss = opt.step(lambda: (w ** 2).sum())
        >>> float(loss) < 0.05, opt.nfev
        (True, 400)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        n_particles: int = 20,
        *,
        forward: Callable[[], Any] | None = None,
        target: float | torch.Tensor = 0.0,
        noise: float | torch.Tensor = 1.0,
        step_size: float = 1.0,
        randomize: str | None = None,
        epoch_steps: int | None = None,
        init_std: float = 1.0,
        init: InitSpec = "perturb",
        size_schedule: SizeSchedule = None,
        bounds: Any = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        executor: Any = None,
    ) -> None:
        owner = type(self).__name__
        self.executor = check_executor(executor, owner)
        self.n_particles = check_int(n_particles, "n_particles", owner, minimum=2)
        if forward is not None and not callable(forward):
            raise TypeError(f"{owner}: forward expected a callable returning the predictions, got {forward!r}")
        if forward is not None and executor is not None:
            raise ValueError(f"{owner}: executor evaluates closures; with forward= the particles run in this process")
        self.forward = forward
        self.step_size = check_positive(step_size, "step_size", owner)
        self.init_std = check_positive(init_std, "init_std", owner)
        self._init = resolve_init(init, owner)
        self.init = init
        if randomize not in RANDOMIZE:
            raise ValueError(f"{owner}: randomize expected one of {RANDOMIZE}, got {randomize!r}")
        self.randomize = randomize
        if epoch_steps is not None and randomize != "epoch":
            warn_ignored("epoch_steps", "only randomize='epoch' draws the ensemble afresh")
        self.epoch_steps = 10 if epoch_steps is None else check_int(epoch_steps, "epoch_steps", owner)
        self.target = torch.as_tensor(target, dtype=torch.float64).detach().reshape(-1).clone()
        if not bool(torch.isfinite(self.target).all()):
            raise ValueError(f"{owner}: target must be finite")
        self.noise = _check_noise(noise, owner)
        self.size_schedule = resolve_size_schedule(size_schedule, self.n_particles, "n_particles", owner, minimum=2)
        super().__init__(params, {"bounds": bounds}, seed=seed, generator=generator)
        self._init.check(self._space(), owner)
        self._misfit_closure = self._misfit if forward is not None else None
        self._last_g: torch.Tensor | None = None

    # ------------------------------------------------------------------ public
    @property
    def ensemble(self) -> torch.Tensor | None:
        """The current particles as a ``(J, n)`` tensor (``None`` before the first step)."""
        return self.method_state.get("ensemble")

    @property
    def ensemble_mean(self) -> torch.Tensor | None:
        """The ensemble mean, EKI's estimate of the solution (``None`` before the first step)."""
        ens = self.ensemble
        return None if ens is None else ens.mean(0)

    def step(self, closure: Callable[..., Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One EKI step (``J`` evaluations and one Kalman update).

        Args:
            closure: the loss (scalar form); with ``forward=`` leave it out.

        Returns:
            The loss at the best particle evaluated so far, which the parameters hold.

        Raises:
            TypeError: a closure with ``forward=``, or none without it.
        """
        if self._misfit_closure is not None:
            if closure is not None:
                raise TypeError(
                    f"{type(self).__name__}.step(): with forward= the loss is the misfit to target; pass no closure"
                )
            closure = self._misfit_closure
        self._last_g = None
        return super().step(closure)

    # ------------------------------------------------------------------ method
    def _misfit(self) -> torch.Tensor:
        with torch.no_grad():
            assert self.forward is not None
            g = torch.as_tensor(self.forward()).detach().to("cpu", torch.float64).reshape(-1).clone()
        y = self.target.expand_as(g) if self.target.numel() == 1 else self.target
        if y.shape != g.shape:
            raise ValueError(f"target: it has {y.numel()} entries but forward() returned {g.numel()}")
        if self.noise.numel() not in (1, g.numel()) and self.noise.shape[0] != g.numel():
            raise ValueError(f"noise: it is {tuple(self.noise.shape)} but forward() returned {g.numel()} values")
        r = y - g
        self._last_g = g
        return 0.5 * (r * _solve(self.noise, r[:, None])[:, 0]).sum()

    def _forward_values(self, space: FlatSpace, X: torch.Tensor) -> torch.Tensor:
        """``G`` at every row of ``X`` as a ``(J, m)`` float64 CPU tensor (the incumbent is updated too)."""
        if self.forward is None:
            return self._evaluate_many(space, X)[:, None]
        rows = []
        for k in range(X.shape[0]):
            self._evaluate(space, X[k])  # runs _misfit, which keeps G in _last_g
            assert self._last_g is not None
            rows.append(self._last_g)
        if len({r.numel() for r in rows}) > 1:
            raise ValueError(f"forward: returned {sorted({r.numel() for r in rows})} values at different particles")
        return torch.stack(rows)

    def _initial(self, space: FlatSpace, center: torch.Tensor, count: int, *, redraw: bool = False) -> torch.Tensor:
        """``count`` particles around ``center``: by ``init``, or (``redraw``, the epoch noise) perturbed."""
        init = PerturbInit() if redraw else self._init
        X = draw_population(init, space, center, count, self._generator(space), self.init_std, type(self).__name__)
        return space.project(X)

    def _load_state(self, space: FlatSpace, st: dict[str, Any]) -> None:
        ens = st.get("ensemble")
        if ens is not None and (ens.ndim != 2 or ens.shape[1] != space.n or ens.shape[0] < 2):
            raise ValueError(f"state_dict: saved 'ensemble' has shape {tuple(ens.shape)}, expected (J >= 2, {space.n})")

    def _step(self, space: FlatSpace, st: dict[str, Any]) -> None:
        first = "ensemble" not in st
        if first:
            ens = self._initial(space, st["best_x"], self.n_particles)
            ens[0] = st["best_x"]
        else:
            ens = st["ensemble"]
        size = self.size_schedule(st["steps"])
        if size > ens.shape[0]:  # grow: new particles around the current mean
            ens = torch.cat([ens, self._initial(space, ens.mean(0), size - ens.shape[0])])
        # particle 0 of the first step is the start, which the base has just evaluated
        g0 = (self._last_g if self.forward is not None else torch.tensor([st["best_f"]])) if first else None
        if g0 is not None:
            G = torch.cat([g0[None].to(torch.float64), self._forward_values(space, ens[1:])])
        else:
            G = self._forward_values(space, ens)
        ok = torch.isfinite(G).all(1)
        moved = ens.clone()
        if int(ok.sum()) >= 2:
            okd = ok.to(space.device)
            moved[okd] = self._update(space, ens[okd], G[ok])
        if self.randomize == "epoch" and (st["steps"] + 1) % self.epoch_steps == 0:
            moved = self._initial(space, moved.mean(0), moved.shape[0], redraw=True)
        st["ensemble"] = space.project(moved)

    def _update(self, space: FlatSpace, ens: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        J, m = G.shape
        theta = ens.to("cpu", torch.float64)
        d_theta = theta - theta.mean(0)
        d_g = G - G.mean(0)
        c_tg = d_theta.T @ d_g / J  # (n, m)
        c_gg = d_g.T @ d_g / J  # (m, m)
        if self.noise.ndim == 1 and self.noise.numel() not in (1, m):
            raise ValueError(f"noise: it has {self.noise.numel()} variances but forward() returned {m} values")
        gamma = self.noise if self.noise.ndim == 2 else torch.diag(self.noise.expand(m))
        if gamma.shape[0] != m:
            raise ValueError(f"noise: it is {tuple(gamma.shape)} but forward() returned {m} values")
        y = self.target.expand(m) if self.target.numel() == 1 else self.target
        Y = y.expand(J, m)
        if self.randomize == "step":
            gen = self._generator(space)
            z = torch.randn((J, m), generator=gen, dtype=space.dtype, device=space.device).to("cpu", torch.float64)
            Y = Y + (z @ torch.linalg.cholesky(gamma).T) / self.step_size**0.5  # eta ~ N(0, Gamma / h)
        h = self.step_size
        if self.noise.ndim == 1 and m > J:  # Woodbury: a (J, J) solve instead of (m, m) for many predictions
            d = self.noise.expand(m)[:, None]
            gi_r, gi_u = (Y - G).T / d, d_g.T / d
            inner = torch.eye(J, dtype=torch.float64) * (J / h) + d_g @ gi_u
            step = gi_r - gi_u @ torch.linalg.solve(inner, d_g @ gi_r)
        else:
            step = torch.linalg.solve(h * c_gg + gamma, (Y - G).T)  # (m, J)
        return (theta + h * (c_tg @ step).T).to(device=space.device, dtype=space.dtype)


def _check_noise(noise: float | torch.Tensor, owner: str) -> torch.Tensor:
    """``Gamma`` as a float64 tensor: 0-d/1-d (diagonal entries, each > 0) or 2-d symmetric positive definite."""
    if isinstance(noise, torch.Tensor):
        g = noise.detach().to("cpu", torch.float64)
    else:
        g = torch.tensor(check_positive(noise, "noise", owner), dtype=torch.float64)
    if g.ndim <= 1:
        if not bool((g > 0).all()) or not bool(torch.isfinite(g).all()):
            raise ValueError(f"{owner}: noise expected positive finite variances, got {g.tolist()}")
        return g.reshape(-1).clone()
    if g.ndim != 2 or g.shape[0] != g.shape[1] or not torch.allclose(g, g.T):
        raise ValueError(f"{owner}: noise expected a symmetric square matrix, got shape {tuple(g.shape)}")
    if torch.linalg.cholesky_ex(g).info != 0:
        raise ValueError(f"{owner}: noise must be positive definite")
    return g.clone()


def _solve(gamma: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Gamma^{-1} b`` for a diagonal (1-D) or full (2-D) ``Gamma``."""
    if gamma.ndim == 2:
        return torch.linalg.solve(gamma, b)
    return b / gamma[:, None]
