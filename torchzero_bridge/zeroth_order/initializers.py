"""Initializers: where the members of a population start.

Every population method (:class:`~torchzero_bridge.zeroth_order.ParticleSwarm`,
:class:`~torchzero_bridge.zeroth_order.EvolutionStrategy`,
:class:`~torchzero_bridge.zeroth_order.SwarmOfOptimizers`,
:class:`~torchzero_bridge.zeroth_order.EnsembleKalmanInversion`) takes ``init=``, which draws its
initial members. An initializer receives the optimizer's
:class:`~torchzero_bridge.core.device.FlatSpace`, a centre point (the current parameters for the
initial population), a count, the optimizer's seeded ``torch.Generator`` and the optimizer's
spread (``init_std``, or the per-group ``lr`` for the evolution strategy) and returns a
``(count, n)`` population. The optimizer then clips it to the bounds, rounds integer entries, and
puts member 0 back at the current parameters, so the starting point is always evaluated.

``init=`` accepts:

* ``"perturb"`` (default): ``centre + spread * N(0, 1)``, the behaviour before initializers existed;
* ``"fitted"`` or :class:`FittedInit`: a distribution fitted to each tensor's current values;
* :class:`ModuleInit` ``(module)``, or the module itself: the module's own ``reset_parameters``;
* a plain callable ``f(count, generator) -> Tensor`` of shape ``(count, n)``;
* any :class:`Initializer` subclass.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order import ParticleSwarm
    >>> w = torch.linspace(-1.0, 1.0, 50)
    >>> start = w.clone()
    >>> opt = ParticleSwarm([w], n_particles=8, init="fitted", seed=0)
    >>> loss = opt.step(lambda: (w**2).sum())
    >>> X = opt.method_state["positions"]  # member 0 at the start, the others drawn like w's values
    >>> X.shape, bool(torch.equal(X[0], start.double())), round(float(X[1:].std()), 1)
    (torch.Size([8, 50]), True, 0.6)
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any, Union

import torch

from torchzero_bridge.core.device import FlatSpace

__all__ = ["INITIALIZERS", "FittedInit", "InitSpec", "Initializer", "ModuleInit", "PerturbInit", "resolve_init"]

INITIALIZERS = ("perturb", "fitted")
"""The initializers ``init=`` accepts by name."""

Scale = Union[float, torch.Tensor]


class Initializer:
    """Base class of the initializers: draws ``count`` members around ``center``.

    Subclasses implement :meth:`sample` and optionally :meth:`check`; :attr:`uses_scale` says
    whether the optimizer's spread (``init_std``) matters to them (an ``init_std`` given for nothing
    is reported with :class:`~torchzero_bridge.errors.IgnoredOptionWarning`).

    Example:
        >>> import torch
        >>> class Zeros(Initializer):
        ...     def sample(self, space, center, count, generator, scale):
        ...         return torch.zeros(count, space.n, dtype=space.dtype)
        >>> w = torch.ones(3)
        >>> Zeros().sample(FlatSpace([{"params": [w]}], allow_integer=False, owner="doc"), None, 2, None, 1.0).shape
        torch.Size([2, 3])
    """

    uses_scale: bool = True
    """Whether :meth:`sample` uses ``scale``."""

    def sample(
        self, space: FlatSpace, center: torch.Tensor, count: int, generator: torch.Generator, scale: Scale
    ) -> torch.Tensor:
        """``count`` members as a ``(count, n)`` tensor (the caller clips and rounds them).

        Args:
            space: the optimizer's flat space (layout, kinds, bounds, dtype, device).
            center: the flat point ``(n,)`` the population is drawn around.
            count: number of members.
            generator: the optimizer's seeded generator (the only source of randomness to use).
            scale: the optimizer's spread: a number or an ``(n,)`` tensor of per-entry spreads.
        """
        raise NotImplementedError

    def check(self, space: FlatSpace, owner: str) -> None:
        """Validate against the optimizer's parameters (called at construction and before every draw)."""


class PerturbInit(Initializer):
    """``center + scale * N(0, 1)`` per entry: the population is one point plus noise.

    Example:
        >>> w = torch.zeros(2)
        >>> space = FlatSpace([{"params": [w]}], allow_integer=False, owner="doc")
        >>> X = PerturbInit().sample(space, space.read(), 3, torch.Generator().manual_seed(0), 0.5)
        >>> z = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> bool(torch.equal(X, 0.5 * z))
        True
    """

    def sample(
        self, space: FlatSpace, center: torch.Tensor, count: int, generator: torch.Generator, scale: Scale
    ) -> torch.Tensor:
        z = torch.randn((count, space.n), generator=generator, dtype=space.dtype, device=space.device)
        return center + scale * z

    def __repr__(self) -> str:
        return "PerturbInit()"


class FittedInit(Initializer):
    """Each tensor's entries drawn from a distribution fitted to that tensor's values at ``center``.

    Per parameter tensor (complex tensors as their real and imaginary entries together), with
    one ``z ~ N(0, 1)`` per entry:

    * floating-point: ``mean + std * z`` with the tensor's ``mean()`` and ``std()``;
    * integer: the same, rounded (and clipped to the bounds) by the optimizer;
    * boolean: each entry ``True`` with probability ``p``, the tensor's fraction of ``True`` entries.

    A tensor with one entry, or with zero spread (all entries equal), has nothing to fit: it falls
    back to the perturb rule ``value + scale * z`` (``scale``: the optimizer's ``init_std``, or
    ``lr`` for the evolution strategy), rounded for integer and boolean entries.

    Example:
        >>> w = torch.linspace(0.0, 1.0, 1000)
        >>> space = FlatSpace([{"params": [w]}], allow_integer=False, owner="doc")
        >>> X = FittedInit().sample(space, space.read(), 200, torch.Generator().manual_seed(0), 1.0)
        >>> round(float(X.mean()), 2), round(float(X.std()), 2), round(float(w.std()), 2)
        (0.5, 0.29, 0.29)
    """

    def sample(
        self, space: FlatSpace, center: torch.Tensor, count: int, generator: torch.Generator, scale: Scale
    ) -> torch.Tensor:
        z = torch.randn((count, space.n), generator=generator, dtype=space.dtype, device=space.device)
        X = center + scale * z  # the fallback rule; fitted tensors overwrite their slice
        layout = space.layout
        for i, kind in enumerate(layout.kinds):
            a, b = layout.offsets[i], layout.offsets[i + 1]
            c = center[a:b]
            if b - a < 2 or bool((c == c[0]).all()) or not bool(torch.isfinite(c).all()):
                continue
            if kind == "bool":
                p = (c >= 0.5).to(space.dtype).mean()
                X[:, a:b] = (z[:, a:b] < torch.special.ndtri(p)).to(space.dtype)
            else:
                X[:, a:b] = c.mean() + c.std() * z[:, a:b]
        return X

    def __repr__(self) -> str:
        return "FittedInit()"


class ModuleInit(Initializer):
    """Each member is a fresh initialization of ``module`` by its own ``reset_parameters``.

    For member ``k`` the seeds ``s = torch.randint(0, 2**62, (count,), generator=generator)`` are
    drawn first (one call for the whole population); then, with torch's global random state set
    aside (``torch.random.fork_rng``, so the caller's RNG is untouched)::

        torch.manual_seed(s[k])
        fresh = copy.deepcopy(module)
        for sub in fresh.modules():
            if callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()

    and the optimizer's tensors are read from ``fresh`` at the same names (each of the optimizer's
    tensors is found in ``module`` by identity, among its parameters and buffers). A tensor is
    re-initialized when the submodule that directly owns it has ``reset_parameters``; the
    others, e.g. a bare ``nn.Parameter`` of a module without one, follow ``others``: ``"center"``
    keeps the centre's value, ``"fitted"`` uses :class:`FittedInit`'s rule.

    Args:
        module: the module whose parameters the optimizer holds.
        others: rule for tensors no ``reset_parameters`` touches: ``"center"`` or ``"fitted"``.

    Raises:
        TypeError: ``module`` is not a ``torch.nn.Module``.
        ValueError: unknown ``others``; (at the optimizer's construction) a tensor of the optimizer
            that is not in the module, or nothing to re-initialize with ``others="center"``.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 2)
        >>> space = FlatSpace([{"params": list(model.parameters())}], allow_integer=False, owner="doc")
        >>> X = ModuleInit(model).sample(space, space.read(), 3, torch.Generator().manual_seed(0), 1.0)
        >>> X.shape, bool((X[:, :8].abs() <= 0.5).all()), bool(torch.equal(X[1], X[2]))
        (torch.Size([3, 10]), True, False)
    """

    def __init__(self, module: torch.nn.Module, others: str = "center") -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"ModuleInit: module expected a torch.nn.Module, got {type(module).__name__}")
        if others not in ("center", "fitted"):
            raise ValueError(f"ModuleInit: others expected 'center' or 'fitted', got {others!r}")
        self.module = module
        self.others = others
        self.uses_scale = others == "fitted"  # the fitted rule's fallback for tensors with nothing to fit

    def _names(self, space: FlatSpace, owner: str) -> list[tuple[str, str, bool]]:
        """Per optimizer tensor: (``"param"``/``"buffer"``, name in the module, re-initialized)."""
        found: dict[int, tuple[str, str, bool]] = {}
        for prefix, sub in self.module.named_modules(remove_duplicate=False):
            resets = callable(getattr(sub, "reset_parameters", None))
            dot = f"{prefix}." if prefix else ""
            for kind, items in (
                ("param", sub.named_parameters(recurse=False)),
                ("buffer", sub.named_buffers(recurse=False)),
            ):
                for name, t in items:
                    if id(t) not in found or (resets and not found[id(t)][2]):
                        found[id(t)] = (kind, dot + name, resets)
        names = []
        for i, p in enumerate(space.layout.params):
            if id(p) not in found:
                raise ValueError(
                    f"{owner}: init=ModuleInit: {space.layout.name(i)} is not a parameter or buffer of the "
                    f"{type(self.module).__name__} given to ModuleInit; "
                    "pass the module whose parameters the optimizer holds"
                )
            names.append(found[id(p)])
        return names

    def check(self, space: FlatSpace, owner: str) -> None:
        names = self._names(space, owner)
        if self.others == "center" and not any(reset for _, _, reset in names):
            raise ValueError(
                f"{owner}: init=ModuleInit: no submodule of the {type(self.module).__name__} that owns the optimizer's "
                "tensors has reset_parameters, so every member would start at the centre; use init='fitted' "
                "or ModuleInit(module, others='fitted')"
            )

    def sample(
        self, space: FlatSpace, center: torch.Tensor, count: int, generator: torch.Generator, scale: Scale
    ) -> torch.Tensor:
        names = self._names(space, "ModuleInit")
        seeds = torch.randint(0, 2**62, (count,), generator=generator, device=generator.device).tolist()
        X = FittedInit().sample(space, center, count, generator, scale) if self.others == "fitted" else None
        if X is None:
            X = center.expand(count, space.n).clone()
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        layout = space.layout
        for k, s in enumerate(seeds):
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                torch.manual_seed(s)
                fresh = copy.deepcopy(self.module)
                for sub in fresh.modules():
                    reset_fn = getattr(sub, "reset_parameters", None)
                    if callable(reset_fn):
                        reset_fn()
            for i, (kind, name, reset) in enumerate(names):
                if not reset:
                    continue
                t = fresh.get_parameter(name) if kind == "param" else fresh.get_buffer(name)
                t = torch.view_as_real(t.detach()) if t.is_complex() else t.detach()
                X[k, layout.offsets[i] : layout.offsets[i + 1]] = t.reshape(-1).to(space.device, space.dtype)
        return X

    def __repr__(self) -> str:
        return f"ModuleInit({type(self.module).__name__}, others={self.others!r})"


class _CallableInit(Initializer):
    """A user callable ``f(count, generator) -> Tensor (count, n)``."""

    uses_scale = False

    def __init__(self, fn: Callable[[int, torch.Generator], Any]) -> None:
        self.fn = fn

    def sample(
        self, space: FlatSpace, center: torch.Tensor, count: int, generator: torch.Generator, scale: Scale
    ) -> torch.Tensor:
        return self.fn(count, generator)

    def __repr__(self) -> str:
        return f"{getattr(self.fn, '__name__', type(self.fn).__name__)}(count, generator)"


InitSpec = Union[str, Initializer, torch.nn.Module, Callable[[int, torch.Generator], torch.Tensor]]
"""What ``init=`` accepts: a name in :data:`INITIALIZERS`, an :class:`Initializer`, a module or ``f(count, gen)``."""


def resolve_init(init: InitSpec, owner: str) -> Initializer:
    """The :class:`Initializer` for an ``init=`` option, checked at construction.

    Raises:
        ValueError: an unknown name.
        TypeError: anything else that is not an initializer, module or ``f(count, generator)``.

    Example:
        >>> resolve_init("fitted", "ParticleSwarm")
        FittedInit()
    """
    if isinstance(init, Initializer):
        return init
    if isinstance(init, str):
        if init == "perturb":
            return PerturbInit()
        if init == "fitted":
            return FittedInit()
        raise ValueError(
            f"{owner}: init expected one of {INITIALIZERS}, a ModuleInit(module), a module or f(count, generator), "
            f"got {init!r}"
        )
    if isinstance(init, torch.nn.Module):
        return ModuleInit(init)
    if callable(init):
        try:
            inspect.signature(init).bind(1, torch.Generator())
        except TypeError as exc:
            raise TypeError(f"{owner}: init expected a callable f(count, generator) -> Tensor; {exc}") from None
        except ValueError:  # no signature to inspect (some builtins): checked when called
            pass
        return _CallableInit(init)
    raise TypeError(
        f"{owner}: init expected one of {INITIALIZERS}, an Initializer, a module or f(count, generator), "
        f"got {type(init).__name__}"
    )


def draw_population(
    init: Initializer,
    space: FlatSpace,
    center: torch.Tensor,
    count: int,
    generator: torch.Generator,
    scale: Scale,
    owner: str,
) -> torch.Tensor:
    """``init``'s ``(count, n)`` population as a new tensor in the space's dtype and device (not yet projected).

    Raises:
        TypeError: the initializer returned something that is not a real tensor.
        ValueError: wrong shape or non-finite entries.

    Example:
        >>> w = torch.zeros(2)
        >>> space = FlatSpace([{"params": [w]}], allow_integer=False, owner="doc")
        >>> init = resolve_init(lambda k, g: torch.ones(k, 3), "doc")
        >>> draw_population(init, space, space.read(), 4, None, 1.0, "doc")
        Traceback (most recent call last):
        ...
        ValueError: doc: init returned shape (4, 3), expected (4, 2): one row per member, one column per parameter entry
    """
    init.check(space, owner)
    X = init.sample(space, center, count, generator, scale)
    if not isinstance(X, torch.Tensor) or X.is_complex():
        raise TypeError(f"{owner}: init returned {type(X).__name__}, expected a real (count, n) torch.Tensor")
    if tuple(X.shape) != (count, space.n):
        raise ValueError(
            f"{owner}: init returned shape {tuple(X.shape)}, expected {(count, space.n)}: "
            "one row per member, one column per parameter entry"
        )
    X = X.detach().to(device=space.device, dtype=space.dtype)
    if type(init) not in (PerturbInit, FittedInit, ModuleInit):  # the caller writes into it: never the user's tensor
        X = X.clone()
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{owner}: init returned non-finite entries")
    return X
