"""Population evaluation on executors: thread and process pools, and a real Dask LocalCluster.

Truth: the same population evaluated serially in this process (``BatchObjective.evaluate`` and a
hand-written loop over the closure), compared bit for bit.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.remote import RemoteEvaluator, check_executor


def mse(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(X), y)


def _problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, FlatParams, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    X, y = torch.randn(40, 4, generator=g), torch.randn(40, 1, generator=g)
    flat = FlatParams(list(model.parameters()))
    P = np.random.default_rng(1).normal(size=(23, flat.n))
    return model, X, y, flat, P


def _closure_for(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> Any:
    def closure(backward: bool = True) -> torch.Tensor:
        loss = mse(model, X, y)
        if backward:
            loss.backward()
        return loss

    return closure


def _serial_closure(flat: FlatParams, closure: Any, P: np.ndarray) -> np.ndarray:
    out = []
    with torch.no_grad():
        for row in P:
            flat.write(row)
            out.append(float(closure(backward=False)))
    return np.array(out)


@pytest.mark.parametrize("pool", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_pools_give_the_serial_losses_bit_for_bit(pool: type) -> None:
    model, X, y, flat, P = _problem()
    batch = tzb.BatchObjective(model, mse, X, y, chunk_size=5)
    closure = _closure_for(model, X, y)
    with pool(2) as ex:
        by_batch = RemoteEvaluator(ex, batch, flat).evaluate(flat, P)
        by_closure = RemoteEvaluator(ex, closure, flat, chunk_size=4).evaluate(flat, torch.from_numpy(P))
    np.testing.assert_array_equal(by_batch, batch.evaluate(flat, P))
    np.testing.assert_array_equal(by_closure, _serial_closure(flat, closure, P))


def test_a_batch_objective_survives_pickling() -> None:
    import pickle

    model, X, y, flat, P = _problem()
    batch = tzb.BatchObjective(model, mse, X, y)
    copy = pickle.loads(pickle.dumps(batch))
    assert copy.model is not model
    worker_flat = FlatParams(list(copy.model.parameters()))
    np.testing.assert_array_equal(copy.evaluate(worker_flat, P), batch.evaluate(flat, P))


def test_a_closure_that_cannot_be_pickled_is_named() -> None:
    model, X, y, flat, _ = _problem()
    lock = threading.Lock()

    def closure() -> torch.Tensor:
        with lock:
            return mse(model, X, y)

    with ThreadPoolExecutor(1) as ex, pytest.raises(TypeError, match=r"closure.*cannot be sent.*picklable"):
        RemoteEvaluator(ex, closure, flat)


def test_a_module_level_closure_is_refused() -> None:
    _, _, _, flat, _ = _problem()
    with ThreadPoolExecutor(1) as ex, pytest.raises(TypeError, match="importable module"):
        RemoteEvaluator(ex, mse, flat)


def test_bad_executor_and_chunk_size() -> None:
    with pytest.raises(TypeError, match=r"executor expected a concurrent\.futures\.Executor"):
        check_executor(map, "DE")
    assert check_executor(None, "DE") is None
    _, _, _, flat, _ = _problem()
    with ThreadPoolExecutor(1) as ex, pytest.raises(ValueError, match="chunk_size"):
        RemoteEvaluator(ex, lambda: 0.0, flat, chunk_size=0)


# ---------------------------------------------------------------------------- Dask
def _import_package() -> None:
    import torchzero_bridge  # noqa: F401


def _two_workers() -> Any:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster)
    client.run(_import_package)  # workers import torch once, before the timed work
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def dask_client() -> Any:
    yield from _two_workers()


@pytest.fixture
def doomed_client() -> Any:
    """A cluster of its own for a test that kills a worker: nothing waits for the nanny's restart,
    which on a loaded machine once never came (the run itself needs only the surviving worker)."""
    yield from _two_workers()


def test_dask_gives_the_serial_losses(dask_client: Any) -> None:
    model, X, y, flat, P = _problem()
    batch = tzb.BatchObjective(model, mse, X, y, chunk_size=3)
    closure = _closure_for(model, X, y)
    np.testing.assert_array_equal(RemoteEvaluator(dask_client, batch, flat).evaluate(flat, P), batch.evaluate(flat, P))
    remote = RemoteEvaluator(dask_client, closure, flat, chunk_size=5)
    np.testing.assert_array_equal(remote.evaluate(flat, P), _serial_closure(flat, closure, P))


# ---------------------------------------------------------------------------- solvers
def _de_run(executor: Any, source: str) -> tuple[list[float], float, int, int]:
    model, X, y, _, _ = _problem()
    here: list[int] = []  # closure runs in this process
    inner = _closure_for(model, X, y)

    def counted(backward: bool = True) -> torch.Tensor:
        here.append(1)
        return inner(backward)

    closure: Any = tzb.BatchObjective(model, mse, X, y, chunk_size=4) if source == "batch" else counted
    n = sum(p.numel() for p in model.parameters())
    opt = tzb.DifferentialEvolutionWrapper(
        model.parameters(),
        {"bounds": [(-4, 4)] * n},
        maxiter=4,
        popsize=3,
        rng=5,
        polish=source == "batch",
        updating="deferred",
        executor=executor,
    )
    loss = float(opt.step(closure))
    return [float(v) for p in model.parameters() for v in p.detach().reshape(-1)], loss, opt.result.nfev, len(here)


@pytest.mark.parametrize("source", ["batch", "closure"])
def test_differential_evolution_on_a_process_pool_equals_the_serial_run(source: str) -> None:
    serial = _de_run(None, source)
    with ProcessPoolExecutor(2) as pool:
        remote = _de_run(pool, source)
    assert remote[:3] == serial[:3]
    if source == "closure":  # serially every point runs here; with the pool only the start point does
        assert (serial[3], remote[3]) == (serial[2], 1)


def test_differential_evolution_refuses_workers_with_an_executor() -> None:
    w = torch.zeros(2, requires_grad=True)
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="workers cannot be given"):
        tzb.DifferentialEvolutionWrapper([w], {"bounds": [(-1, 1)] * 2}, workers=2, executor=pool)
    with pytest.raises(TypeError, match="executor expected"):
        tzb.DifferentialEvolutionWrapper([w], {"bounds": [(-1, 1)] * 2}, executor=4)


def test_nevergrad_batches_on_dask_equal_the_serial_run(dask_client: Any) -> None:
    pytest.importorskip("nevergrad")
    runs = []
    for executor in (None, dask_client):
        model, X, y, _, _ = _problem()
        opt = tzb.NevergradWrapper(
            model.parameters(), "TwoPointsDE", budget=60, num_workers=6, seed=3, executor=executor
        )
        loss = float(opt.step(_closure_for(model, X, y)))
        runs.append((loss, [float(v) for p in model.parameters() for v in p.detach().reshape(-1)], opt.result.nfev))
    assert runs[0] == runs[1]


def test_cma_es_generations_on_dask_equal_the_serial_run(dask_client: Any) -> None:
    pytest.importorskip("cma")
    runs = []
    for executor in (None, dask_client):
        model, X, y, _, _ = _problem()
        opt = tzb.CMAESWrapper(model.parameters(), 0.5, budget=40, popsize=8, seed=3, executor=executor)
        loss = float(opt.step(_closure_for(model, X, y)))
        runs.append((loss, [float(v) for p in model.parameters() for v in p.detach().reshape(-1)], opt.result.nfev))
    assert runs[0] == runs[1]


def test_nevergrad_one_worker_ignores_the_executor() -> None:
    pytest.importorskip("nevergrad")
    w = torch.zeros(2, requires_grad=True)
    with ThreadPoolExecutor(1) as pool, pytest.warns(tzb.IgnoredOptionWarning, match="num_workers=1"):
        opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=4, executor=pool)
    assert opt.executor is None


def _population_run(cls: Any, executor: Any, source: str) -> tuple[list[float], float, int]:
    model, X, y, _, _ = _problem()
    closure: Any = (
        tzb.BatchObjective(model, mse, X, y, chunk_size=3) if source == "batch" else _closure_for(model, X, y)
    )
    size = {"n_particles": 9} if cls is tzb.ParticleSwarm else {"n_offspring": 9}
    opt = cls(model.parameters(), **size, seed=4, executor=executor)
    for _ in range(5):
        loss = float(opt.step(closure))
    return [float(v) for p in model.parameters() for v in p.detach().reshape(-1)], loss, opt.nfev


@pytest.mark.parametrize("source", ["batch", "closure"])
@pytest.mark.parametrize("cls", [tzb.ParticleSwarm, tzb.EvolutionStrategy], ids=lambda c: c.__name__)
def test_particle_swarm_and_evolution_strategy_on_dask_equal_the_serial_run(
    cls: Any, source: str, dask_client: Any
) -> None:
    assert _population_run(cls, dask_client, source) == _population_run(cls, None, source)


def _zeroing_closure(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> Any:
    """The torch.optim closure convention: gradients zeroed, then the loss and its backward."""

    def closure(backward: bool = True) -> torch.Tensor:
        for p in model.parameters():
            p.grad = None
        loss = mse(model, X, y)
        if backward:
            loss.backward()
        return loss

    return closure


def _swarm_run(
    executor: Any, member: str, source: str = "closure", closure: Any = None, **options: Any
) -> tuple[Any, ...]:
    model, X, y, _, _ = _problem()
    if closure is None:
        closure = tzb.BatchObjective(model, mse, X, y) if source == "batch" else _zeroing_closure(model, X, y)
    factory: Any = (
        (lambda q: torch.optim.Adam(q, lr=0.05))
        if member == "Adam"
        else (tzb.RandomWalk, {"lr": 0.3, "adapt": 1.5, "seed": 7})
    )
    opt = tzb.SwarmOfOptimizers(model.parameters(), factory, n=4, patience=2, seed=5, executor=executor, **options)
    for _ in range(5):
        loss = float(opt.step(closure))
    members = [{k: v for k, v in m.state_dict()["state"].items()} for m in opt.members]
    return [float(v) for p in model.parameters() for v in p.detach().reshape(-1)], loss, opt.nfev, repr(members)


@pytest.mark.parametrize("member,source", [("Adam", "closure"), ("Adam", "batch"), ("RandomWalk", "closure")])
def test_swarm_of_optimizers_on_dask_equals_the_serial_run(member: str, source: str, dask_client: Any) -> None:
    """Members stepped on workers (their state shipped out and back) end where the serial swarm ends,
    with the same evaluation count and the same member optimizer states."""
    assert _swarm_run(dask_client, member, source) == _swarm_run(None, member, source)


def test_a_breeding_growing_swarm_on_dask_equals_the_serial_run(dask_client: Any) -> None:
    """Children with crossed-over Adam state, mutated lr and betas, and members added by a schedule:
    the bred state and hyperparameters travel to the workers with each member's step."""
    options = {"state_crossover": "swap", "mutate": True, "reset_state": ("exp_avg",), "size_schedule": "linear"}
    assert _swarm_run(dask_client, "Adam", **options) == _swarm_run(None, "Adam", **options)


def test_swarm_of_optimizers_on_a_thread_pool_equals_the_serial_run() -> None:
    with ThreadPoolExecutor(2) as pool:
        assert _swarm_run(pool, "Adam") == _swarm_run(None, "Adam")


def test_a_population_method_on_a_thread_pool_equals_the_serial_run() -> None:
    with ThreadPoolExecutor(2) as pool:
        assert _population_run(tzb.ParticleSwarm, pool, "closure") == _population_run(
            tzb.ParticleSwarm, None, "closure"
        )


def _first_to_claim(marker: str) -> bool:
    """True for exactly one caller across processes (the file is created atomically), so one worker dies.

    Two workers reaching the kill at the same moment would otherwise both see no marker and both die.
    """
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def test_dask_reruns_the_chunk_of_a_killed_worker(doomed_client: Any, tmp_path: Any) -> None:
    """A worker that dies mid-population (SIGKILL) loses nothing: its chunk runs elsewhere."""
    model, X, y, flat, P = _problem()
    marker = str(tmp_path / "killed")
    here = os.getpid()
    ran: list[int] = []

    def closure(backward: bool = True) -> torch.Tensor:
        if os.getpid() != here and _first_to_claim(marker):
            os.kill(os.getpid(), signal.SIGKILL)  # this worker dies in the middle of its chunk
        ran.append(1)
        return mse(model, X, y)

    remote = RemoteEvaluator(doomed_client, closure, flat, chunk_size=4)
    losses = remote.evaluate(flat, P)
    assert os.path.exists(marker), "no worker was killed"
    np.testing.assert_array_equal(losses, _serial_closure(flat, _closure_for(model, X, y), P))
    assert len(losses) == len(P)


def test_dask_sends_the_payload_again_when_its_last_copy_is_lost(dask_client: Any) -> None:
    """The scattered payload forgotten by the scheduler (its last replica died with a worker):
    the next population scatters it again and gets the serial losses, instead of a cancelled task."""
    model, X, y, flat, P = _problem()
    objective = tzb.BatchObjective(model, mse, X, y)
    remote = RemoteEvaluator(dask_client, objective, flat)
    first = remote.evaluate(flat, P)
    lost = remote._shipped
    dask_client.cancel(lost, force=True)  # what the scheduler does to data whose holders all died
    np.testing.assert_array_equal(remote.evaluate(flat, P), first)
    assert remote._shipped is not None and remote._shipped.key != lost.key
    with torch.no_grad():
        np.testing.assert_array_equal(first, np.asarray(objective.evaluate(flat, P)))


def _killing_closure(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, marker: str) -> Any:
    """Kills the worker process it runs in at its 5th call there, once (``marker`` remembers)."""
    here = os.getpid()
    calls = [0]
    plain = _zeroing_closure(model, X, y)

    def closure(backward: bool = True) -> torch.Tensor:
        calls[0] += 1
        if os.getpid() != here and calls[0] == 5 and _first_to_claim(marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return plain(backward)

    return closure


@pytest.mark.parametrize("method", ["DE", "nevergrad", "ParticleSwarm", "EvolutionStrategy", "SwarmOfOptimizers"])
def test_a_worker_killed_mid_run_changes_nothing(method: str, doomed_client: Any, tmp_path: Any) -> None:
    """A whole run with one worker killed in its middle ends where the undisturbed serial run ends."""
    marker = str(tmp_path / "killed")
    runs = []
    for executor in (None, doomed_client):
        model, X, y, _, _ = _problem()
        closure = _killing_closure(model, X, y, marker)
        n = sum(p.numel() for p in model.parameters())
        if method == "DE":
            opt: Any = tzb.DifferentialEvolutionWrapper(
                model.parameters(),
                {"bounds": [(-4, 4)] * n},
                maxiter=3,
                popsize=2,
                rng=1,
                polish=False,
                updating="deferred",
                executor=executor,
            )
            loss, nfev = float(opt.step(closure)), opt.result.nfev
        elif method == "nevergrad":
            pytest.importorskip("nevergrad")
            opt = tzb.NevergradWrapper(
                model.parameters(), "TwoPointsDE", budget=48, num_workers=12, seed=3, executor=executor
            )
            loss, nfev = float(opt.step(closure)), opt.result.nfev
        elif method == "SwarmOfOptimizers":
            runs.append(_swarm_run(executor, "Adam", closure=closure))
            continue
        else:
            size = {"n_particles": 12} if method == "ParticleSwarm" else {"n_offspring": 12}
            opt = getattr(tzb, method)(model.parameters(), **size, seed=2, executor=executor)
            loss = [float(opt.step(closure)) for _ in range(4)][-1]
            nfev = opt.nfev
        runs.append((loss, nfev, [float(v) for p in model.parameters() for v in p.detach().reshape(-1)]))
    assert os.path.exists(marker), "no worker was killed"
    assert runs[1] == runs[0]
