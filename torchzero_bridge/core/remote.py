"""Evaluate a population on an executor: a ``concurrent.futures`` pool or a Dask ``Client``.

:class:`RemoteEvaluator` has the one method population solvers call on a
:class:`~torchzero_bridge.BatchObjective` — ``evaluate(flat, X)`` — and runs it elsewhere:
the rows of ``X`` are split into chunks, each chunk is one task, and the losses come back in
row order. What a worker needs (the model, its data, the loss or the closure) is serialized
once, when the evaluator is built, and unpickled once per worker process (or thread); a Dask
``Client`` also receives it once per worker through ``scatter``. Each task then carries only
its rows.

The population is made where the solver runs; only where it is evaluated changes, so a run
with an executor gives the serial run's answer bit for bit: a chunk of a ``BatchObjective``
is evaluated with the same vectorized pass sizes as the serial call, and a plain closure is
evaluated one row at a time as it would be serially. With Dask, a worker that dies takes its
tasks with it and the scheduler reruns them elsewhere; the losses are counted once, when they
come back.

Example:
    >>> import torch
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from torchzero_bridge.core.flat import FlatParams
    >>> from torchzero_bridge.core.remote import RemoteEvaluator
    >>> w = torch.zeros(2, requires_grad=True)
    >>> flat = FlatParams([w])
    >>> with ThreadPoolExecutor(2) as pool:
    ...     remote = RemoteEvaluator(pool, lambda: (w ** 2).sum(), flat)
    ...     remote.evaluate(flat, torch.tensor([[1.0, 2.0], [3.0, 0.0]])).tolist()
    [5.0, 9.0]
"""

from __future__ import annotations

import math
import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np
import torch

from torchzero_bridge.core.batch import BatchObjective
from torchzero_bridge.core.closure import ClosureAdapter
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.layout import Layout

__all__ = ["RemoteEvaluator", "check_executor", "is_dask_client"]

_CACHE_SIZE = 4  # payloads kept per worker thread (one per live evaluator, in practice)
_local = threading.local()


def is_dask_client(executor: Any) -> bool:
    """True for a ``dask.distributed.Client`` (checked without importing dask)."""
    return type(executor).__module__.split(".")[0] == "distributed" and hasattr(executor, "scatter")


def check_executor(executor: Any, owner: str) -> Any:
    """Validate an ``executor=`` option at construction.

    Args:
        executor: ``None``, a ``concurrent.futures.Executor`` or a ``dask.distributed.Client``.
        owner: the optimizer's name, for the error.

    Raises:
        TypeError: anything else.
    """
    if executor is None or isinstance(executor, Executor) or is_dask_client(executor):
        return executor
    raise TypeError(
        f"{owner}: executor expected a concurrent.futures.Executor (e.g. ProcessPoolExecutor) or a "
        f"dask.distributed.Client, got {type(executor).__name__}"
    )


class RemoteEvaluator:
    """Losses at the rows of a population, computed on an executor's workers.

    Args:
        executor: a ``concurrent.futures.Executor`` (thread or process pool) or a
            ``dask.distributed.Client``.
        source: a :class:`~torchzero_bridge.BatchObjective` (whose module, loss function and
            inputs are shipped), or a closure. A closure is shipped together with the
            parameter tensors it changes, so it must reach them through what it captures
            (a model in a closure cell or a global of ``__main__``); it is called the way
            value-only evaluations call it (``closure(backward=False)`` under ``no_grad`` when
            it accepts ``backward``).
        flat: the layout of the optimized tensors.
        chunk_size: rows per task. ``None``: the population split evenly over the workers, in
            whole vectorized passes of a ``BatchObjective``.
        retries: how often Dask reruns a task whose evaluation raised (a task lost with its
            worker is rerun by the scheduler regardless), and how often a population is sent
            again when the payload's last copy was lost with a worker.
        extra: anything else the workers' tasks need (picklable), shipped once with the payload
            and found on the worker as ``job.extra``.

    Raises:
        TypeError: the source cannot be serialized (the message names the reason), or a
            closure defined in an importable module, which would be shipped by reference and
            evaluate the worker's own copy of the model.
        ValueError: ``chunk_size`` is not a positive int or ``None``.
    """

    def __init__(
        self,
        executor: Any,
        source: BatchObjective | Callable[..., Any],
        flat: FlatParams | Layout,
        *,
        chunk_size: int | None = None,
        retries: int = 2,
        extra: Any = None,
    ) -> None:
        bad = isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        if chunk_size is not None and bad:
            raise ValueError(f"chunk_size: expected a positive int or None, got {chunk_size!r}")
        self.executor = executor
        self.source = source
        self.chunk_size = chunk_size
        self.retries = retries
        self.dask = is_dask_client(executor)
        self.token = uuid.uuid4().hex
        self._pass: BatchObjective | None
        if isinstance(source, BatchObjective):
            self._pass = source
            payload: tuple[Any, ...] = ("batch", source, source.names_for(flat), flat.n, extra)
        else:
            self._pass = None
            payload = ("closure", source, list(flat.params), flat.n, extra)
        self.payload = _serialize(payload, source)
        self._shipped: Any = None  # a Dask future holding the payload on every worker

    def evaluate(self, flat: FlatParams | Layout, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Loss at each row of ``X`` (shape ``(pop, n)``) as a float64 array, in row order.

        Args:
            flat: the layout the rows are written in (as for ``BatchObjective.evaluate``).
            X: the population, a numpy array or a tensor on any device.
        """
        Xn = X.detach().to("cpu", torch.float64).numpy() if isinstance(X, torch.Tensor) else np.asarray(X, np.float64)
        if Xn.ndim != 2 or Xn.shape[1] != flat.n:
            raise ValueError(f"X: expected shape (pop, {flat.n}), got {Xn.shape}")
        pop = Xn.shape[0]
        if pop == 0:
            return np.empty(0)
        size = self._rows_per_task(flat, pop)
        chunks = [np.ascontiguousarray(Xn[a : a + size]) for a in range(0, pop, size)]
        parts = self.run_tasks(_run_chunk, [(c,) for c in chunks])
        return np.concatenate(parts).astype(np.float64, copy=False)

    def run_tasks(self, fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
        """``fn(job, *a)`` for each ``a`` in ``args`` on the workers, results in order.

        ``fn`` must be a module-level function; ``job`` is the worker's unpickled payload
        (a :class:`WorkerJob`). Tasks must be pure functions of their arguments: one whose
        worker died is run again.
        """
        if self.dask:
            return self._on_dask(fn, args)
        futures = [self.executor.submit(_run_task, self.token, self.payload, fn, a) for a in args]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def _on_dask(self, fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
        # The scattered payload has no recipe: Dask's memory manager keeps one replica of it, and
        # if the worker holding that replica dies the key is forgotten and every task needing it is
        # cancelled. The chunks are pure functions of the rows, so the payload is scattered again
        # and the chunks resubmitted (nothing is counted twice: the host counts rows, not tasks).
        from distributed.client import FutureCancelledError

        client = self.executor
        for attempt in range(self.retries + 1):
            if self._shipped is None:
                self._shipped = client.scatter(self.payload, broadcast=True, hash=False)
            futures = [
                client.submit(_run_task, self.token, self._shipped, fn, a, pure=False, retries=self.retries)
                for a in args
            ]
            try:
                return list(client.gather(futures))
            except FutureCancelledError:
                client.cancel(futures)
                self._shipped = None
                if attempt == self.retries:
                    raise
            except BaseException:
                client.cancel(futures)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _rows_per_task(self, flat: FlatParams | Layout, pop: int) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        size = math.ceil(pop / max(1, _worker_count(self.executor)))
        if self._pass is not None:  # whole vectorized passes: each pass is the serial call's own
            per_pass = max(1, self._pass.points_per_pass(flat, pop))
            size = math.ceil(size / per_pass) * per_pass if per_pass < size else size
        return size


def _worker_count(executor: Any) -> int:
    if is_dask_client(executor):
        return max(1, sum(w.get("nthreads", 1) for w in executor.scheduler_info()["workers"].values()))
    return int(getattr(executor, "_max_workers", 1) or 1)


def _serialize(payload: tuple[Any, ...], source: Any) -> bytes:
    try:
        import cloudpickle  # installed with dask; pickles closures and lambdas by value

        dumps: Callable[[Any], bytes] = cloudpickle.dumps
    except ImportError:  # pragma: no cover - plain pickle: module-level functions only
        dumps = pickle.dumps
    what = type(source).__name__ if isinstance(source, BatchObjective) else getattr(source, "__qualname__", "closure")
    try:
        data = dumps(payload)
    except Exception as exc:
        raise TypeError(
            f"executor: the {what} cannot be sent to the workers ({type(exc).__name__}: {exc}); "
            "everything it uses must be picklable (open files, locks and generators are not)"
        ) from exc
    if payload[0] == "closure":
        shipped = pickle.loads(data)[1]
        if shipped is source:
            raise TypeError(
                f"executor: the closure {what} is defined in an importable module, so it would be sent "
                "by reference and evaluate the worker's own copy of the model; define it inside a "
                "function (or in the main script), or pass a tzb.BatchObjective"
            )
    return data


def _run_task(token: str, payload: bytes, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Worker side: ``fn(job, *args)`` with the payload unpickled once per worker thread."""
    cache: OrderedDict[str, Any] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    job = cache.get(token)
    if job is None:
        job = WorkerJob(pickle.loads(payload))
        cache[token] = job
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    return fn(job, *args)


def _run_chunk(job: WorkerJob, X: np.ndarray) -> np.ndarray:
    """Worker side: the losses of the rows of ``X``."""
    return job.run(X)


class WorkerJob:
    """An unpickled payload on a worker: the source, its own copy of the tensors, and ``extra``."""

    def __init__(self, payload: tuple[Any, ...]) -> None:
        kind, source, what, n, self.extra = payload
        self.kind = kind
        self.source = source
        if kind == "batch":
            named = dict(source.model.named_parameters())
            named.update(source.model.named_buffers())
            tensors = [named[name.removeprefix("model.")] for name in what]
        else:
            tensors = what
            self.adapter = ClosureAdapter(source)
        self.flat = FlatParams([{"params": tensors}], allow_integer=True)
        if self.flat.n != n:
            raise RuntimeError(f"the worker's copy has {self.flat.n} entries, expected {n}")

    def run(self, X: np.ndarray) -> np.ndarray:
        if self.kind == "batch":
            return np.asarray(self.source.evaluate(self.flat, X), dtype=np.float64)
        out = np.empty(X.shape[0])
        for i, x in enumerate(X):
            self.flat.write(x)
            out[i] = self.adapter.value()
        return out
