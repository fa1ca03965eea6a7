"""BatchObjective: evaluate many flat parameter vectors in one vectorized pass.

Population solvers (differential evolution, nevergrad with several workers, particle
swarms...) ask for the loss at many points at once. Given a module and a *pure* loss
function, :class:`BatchObjective` evaluates a whole population with
``torch.func.functional_call`` under ``torch.vmap``, in chunks of at most ``chunk_size``
points to bound memory (by default sized so that one pass's intermediates stay small on a
CPU). A plain closure keeps working, one point at a time.

Example:
    >>> import torch, numpy as np
    >>> import torchzero_bridge as tzb
    >>> model = torch.nn.Linear(2, 1)
    >>> X, y = torch.randn(16, 2), torch.randn(16, 1)
    >>> batch = tzb.BatchObjective(model, lambda m, X, y: ((m(X) - y) ** 2).mean(), X, y)
    >>> flat = tzb.FlatParams(model.parameters())
    >>> losses = batch.evaluate(flat, np.stack([flat.read(), flat.read() + 1.0]))
    >>> losses.shape
    (2,)

A ``BatchObjective`` is also a closure (``opt.step(batch)``): called, it returns the loss at
the model's current parameters, and population solvers detect it and batch their calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.layout import Layout

__all__ = ["BatchObjective"]

_AUTO_ROWS = 1 << 15  # "auto" chunks on CPU: about this many data rows (points x rows) per pass
_AUTO_MIN, _AUTO_MAX = 16, 1024


class _LossModule(torch.nn.Module):
    """Wraps ``loss_fn(model, *inputs)`` so ``functional_call`` can swap the model's tensors."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, *inputs: Any) -> Any:
        return self.loss_fn(self.model, *inputs)


class BatchObjective:
    """A module plus a pure loss, evaluable at many parameter vectors at once.

    Args:
        model: the module whose parameters (some or all) are being optimized.
        loss_fn: ``loss_fn(model, *inputs) -> scalar tensor``. It must be pure: no in-place
            updates of module state, no Python control flow on tensor values, no ``.item()``
            (``torch.vmap`` rules).
        *inputs: tensors (data, targets) passed to ``loss_fn`` after the model.
        chunk_size: at most this many points per vectorized pass. ``None``: the whole
            population in one pass. ``"auto"`` (default): for parameters on the CPU, about
            32768 / ``rows`` points per pass (at least 16, at most 1024), where ``rows`` is the
            longest first dimension among the tensor ``inputs`` (1 without inputs), so that a
            pass's intermediates stay near the CPU caches (a population of thousands evaluated
            in one pass can run several times slower); on other devices, the whole population.

    Raises:
        TypeError: ``model`` is not a module or ``loss_fn`` is not callable.
        ValueError: ``chunk_size`` is not a positive int, ``None`` or ``"auto"``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[..., Any],
        *inputs: Any,
        chunk_size: int | Literal["auto"] | None = "auto",
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn: expected a callable loss_fn(model, *inputs), got {type(loss_fn).__name__}")
        positive = isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size >= 1
        if not (positive or chunk_size is None or (isinstance(chunk_size, str) and chunk_size == "auto")):
            raise ValueError(f"chunk_size: expected a positive int, None or 'auto', got {chunk_size!r}")
        self.model = model
        self.loss_fn = loss_fn
        self.inputs = inputs
        self.chunk_size = chunk_size
        self._wrapper = _LossModule(model, loss_fn)
        self._vmapped = torch.vmap(self._call_one, in_dims=(0,), randomness="different")
        self._names: dict[int, str] = {}
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            self._names.setdefault(id(t), "model." + name)
        # every attribute that holds a tensor, once per module object: a weight tied between two
        # modules gets both names, a module reachable under two names (shared) is swapped once
        self._aliases: dict[int, tuple[str, ...]] = {}
        for prefix, module in self._wrapper.named_modules():
            if module is self._wrapper:
                continue
            members = [*module.named_parameters(recurse=False, remove_duplicate=False)]
            members += module.named_buffers(recurse=False, remove_duplicate=False)
            for attr, t in members:
                self._aliases[id(t)] = (*self._aliases.get(id(t), ()), f"{prefix}.{attr}")

    def __getstate__(self) -> dict[str, Any]:
        # what rebuilds it: the vmapped function and the id-keyed name tables are made anew
        return {"model": self.model, "loss_fn": self.loss_fn, "inputs": self.inputs, "chunk_size": self.chunk_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"], state["loss_fn"], *state["inputs"], chunk_size=state["chunk_size"])  # type: ignore[misc]

    def names_for(self, flat: FlatParams | Layout) -> list[str]:
        """Module attribute names of the optimized tensors, in flat order.

        Raises:
            ValueError: an optimized tensor is not a parameter or buffer of ``model``, or is
                complex (not supported in batched evaluation).
        """
        names = []
        for i, p in enumerate(flat.params):
            name = self._names.get(id(p))
            if name is None:
                raise ValueError(
                    f"BatchObjective: {flat.name(i)} is not a parameter or buffer of the given model; "
                    "batched evaluation can only substitute the model's own tensors"
                )
            if p.is_complex():
                raise ValueError(f"BatchObjective: {flat.name(i)} is complex; batched evaluation supports real tensors")
            names.append(name)
        return names

    def loss(self, model: torch.nn.Module | None = None) -> torch.Tensor:
        """The loss at the model's current parameters (with autograd graph)."""
        return self.loss_fn(self.model if model is None else model, *self.inputs)

    def __call__(self, backward: bool = True) -> torch.Tensor:
        """Closure protocol: a ``BatchObjective`` can be passed to any ``step``.

        Args:
            backward: also run the backward pass (gradients land in ``.grad``).
        """
        if not backward:
            return self.loss()
        for p in self.model.parameters():
            p.grad = None
        loss = self.loss()
        loss.backward()
        return loss

    @torch.no_grad()
    def evaluate(self, flat: FlatParams | Layout, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Loss at each row of ``X`` (shape ``(pop, n)``), as a float64 array of length ``pop``.

        Integer entries are rounded exactly as :meth:`FlatParams.write` rounds them. The
        population is converted to the parameters' dtype and device once per call; each
        chunk then passes row slices of it to the vectorized loss.
        """
        self.names_for(flat)  # every optimized tensor belongs to the model and is real
        aliases = [self._aliases[id(p)] for p in flat.params]
        Xt = X if isinstance(X, torch.Tensor) else torch.from_numpy(np.asarray(X, dtype=np.float64))
        if Xt.ndim != 2 or Xt.shape[1] != flat.n:
            raise ValueError(f"X: expected shape (pop, {flat.n}), got {tuple(Xt.shape)}")
        if flat.has_integers:
            Xt = torch.from_numpy(flat.round_integers(Xt.detach().to("cpu", torch.float64).numpy()))
        pop = Xt.shape[0]
        columns = _columns(flat, aliases, Xt)
        step = max(1, self.points_per_pass(flat, pop))
        out = torch.empty(pop, dtype=torch.float64)
        for start in range(0, pop, step):
            stop = min(start + step, pop)
            params = columns if stop - start == pop else {k: v[start:stop] for k, v in columns.items()}
            out[start:stop] = self._vmapped(params).reshape(-1)
        return out.numpy()

    def points_per_pass(self, flat: FlatParams | Layout, pop: int) -> int:
        """How many of ``pop`` points one vectorized pass evaluates (see ``chunk_size``)."""
        if self.chunk_size is None:
            return pop
        if self.chunk_size != "auto":
            return min(pop, self.chunk_size)
        if any(p.device.type != "cpu" for p in flat.params):
            return pop
        rows = max((t.shape[0] for t in self.inputs if isinstance(t, torch.Tensor) and t.ndim), default=1)
        return min(pop, max(_AUTO_MIN, min(_AUTO_MAX, _AUTO_ROWS // max(1, rows))))

    def _call_one(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        # ``params`` already names every attribute holding an optimized tensor, once per module
        # object (``_aliases``), so functional_call's own search for tied names is skipped: it
        # costs time per pass, and it swaps a shared submodule's tensor twice, which leaves a
        # batched tensor in the model after the call
        loss = torch.func.functional_call(self._wrapper, params, self.inputs, strict=False, tie_weights=False)
        return loss.reshape(())


def _columns(flat: FlatParams | Layout, aliases: list[tuple[str, ...]], X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-tensor views ``(pop, *shape)`` of population ``X`` in each tensor's dtype and device.

    Every name of a tensor (``aliases``, in flat order) maps to its view. When every optimized
    tensor has the same floating dtype and device, ``X`` is converted once and the views share
    that one copy; otherwise each tensor's columns are converted on their own.
    """
    pop = X.shape[0]
    params = flat.params
    first = params[0]
    if first.is_floating_point() and all(p.dtype == first.dtype and p.device == first.device for p in params):
        X = X.to(device=first.device, dtype=first.dtype)
        views = [X[:, a:b].reshape((pop, *p.shape)) for p, a, b in zip(params, flat.offsets, flat.offsets[1:])]
    else:
        views = [
            X[:, a:b].reshape((pop, *p.shape)).to(device=p.device, dtype=p.dtype)
            for p, a, b in zip(params, flat.offsets, flat.offsets[1:])
        ]
    return {name: view for names, view in zip(aliases, views) for name in names}
