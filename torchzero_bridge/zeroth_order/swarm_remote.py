"""Member steps of a :class:`~torchzero_bridge.zeroth_order.swarm.SwarmOfOptimizers` run on an executor.

A swarm member is a whole optimizer, so the unit of remote work is one member's step: the task
carries the member's position and its optimizer's ``state_dict``; the worker rebuilds the
member's optimizer from the factory (shipped once, with the closure) over its own copy of the
tensors, loads the state, runs one ``step`` with the closure, and sends back where the member
ended, its new ``state_dict`` and every point it evaluated with its loss. The host loads the
state into its own member and records the evaluations in member order, exactly as a serial
step would have seen them, so a run with an executor ends where the serial run ends.

Example:
    >>> import torch
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from torchzero_bridge.zeroth_order import SwarmOfOptimizers
    >>> w = torch.tensor([2.0, -2.0], requires_grad=True)
    >>> def closure(backward=True):
    ...     w.grad = None
    ...     loss = ((w - 1.0) ** 2).sum()
    ...     if backward:
    ...         loss.backward()
    ...     return loss
    >>> with ThreadPoolExecutor(2) as pool:
    ...     opt = SwarmOfOptimizers([w], lambda p: torch.optim.SGD(p, lr=0.1), n=3, seed=0, executor=pool)
    ...     for _ in range(50):
    ...         loss = opt.step(closure)
    >>> float(loss) < 1e-6
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from torchzero_bridge.core.closure import ClosureAdapter, loss_to_float
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.core.remote import RemoteEvaluator, WorkerJob
from torchzero_bridge.zeroth_order.inner import OptimizerSpec, build_optimizer

__all__ = ["MemberResult", "member_groups", "run_member_step", "step_members_remotely"]

# (final position, the optimizer's state_dict, the evaluated points (k, n), their losses)
MemberResult = tuple[np.ndarray, dict[str, Any], np.ndarray, list[float]]


def member_groups(
    groups: Sequence[Mapping[str, Any]], tensors: Sequence[torch.Tensor]
) -> list[tuple[list[int], dict[str, Any]]]:
    """The members' param groups as positions in ``tensors`` plus options (what a worker rebuilds).

    Args:
        groups: the param groups a member optimizer is built over (``bounds`` already removed).
        tensors: the tensors shipped to the workers, in the order they are shipped (every tensor
            of ``groups`` is among them: frozen parameters never enter a group).

    Example:
        >>> import torch
        >>> a, b = torch.zeros(2), torch.zeros(3)
        >>> member_groups([{"params": [b], "lr": 0.1}, {"params": [a], "lr": 1.0}], [a, b])
        [([1], {'lr': 0.1}), ([0], {'lr': 1.0})]
    """
    where = {id(t): i for i, t in enumerate(tensors)}
    return [([where[id(p)] for p in g["params"]], {k: v for k, v in g.items() if k != "params"}) for g in groups]


def run_member_step(job: WorkerJob, x: np.ndarray, state: dict[str, Any]) -> MemberResult:
    """Worker side: one member's optimizer step from position ``x`` with optimizer state ``state``.

    ``job.extra`` is ``(factory, groups)`` with ``groups`` from :func:`member_groups`.
    """
    factory: OptimizerSpec
    factory, layout = job.extra
    tensors = job.flat.params
    groups = [{"params": [tensors[i] for i in idx], **options} for idx, options in layout]
    with torch.random.fork_rng(devices=[]):  # construction randomness is replaced by the loaded state
        opt = build_optimizer(factory, groups, owner="SwarmOfOptimizers", what="optimizers_factory", closure_ok=True)
    opt.load_state_dict(copy.deepcopy(state))  # in a thread pool the host's tensors would be shared
    job.flat.write(x)
    points: list[np.ndarray] = []
    losses: list[float] = []

    def seen(loss: Any) -> None:
        points.append(job.flat.read())
        losses.append(loss_to_float(loss))

    opt.step(ClosureAdapter(job.source).observed(seen))
    stacked = np.stack(points) if points else np.empty((0, x.shape[0]))
    return job.flat.read(), opt.state_dict(), stacked, losses


def step_members_remotely(
    swarm: Any, space: FlatSpace, remote: RemoteEvaluator, X: torch.Tensor, fitness: torch.Tensor
) -> None:
    """Host side: every member's step of ``swarm`` as one task, evaluations recorded in member order.

    Row ``i`` of ``X`` and ``fitness`` become member ``i``'s new position and the lowest loss it
    saw, and its optimizer gets the state its step left, as after a serial swarm step.
    """
    starts = X.detach().to("cpu", torch.float64).numpy()
    tasks = [(starts[i].copy(), m.state_dict()) for i, m in enumerate(swarm.members)]
    results: list[MemberResult] = remote.run_tasks(run_member_step, tasks)
    for i, (end, state, points, losses) in enumerate(results):
        best = math.inf
        for point, f in zip(points, losses):
            at = torch.as_tensor(point).to(device=space.device, dtype=space.dtype)
            best = min(best, swarm._record_point(space, at, f))
        swarm.members[i].load_state_dict(state)
        X[i] = space.project(torch.as_tensor(end).to(device=space.device, dtype=space.dtype))
        fitness[i] = best
    swarm._at_best = False  # the parameters were not touched; the best point is written back at the end
