"""Checkpoints of every registered optimizer: plain data, secure loading, identical resumption.

For each entry of :mod:`torchzero_bridge.testing.registry`: step ``K`` times, save the model's
and the optimizer's ``state_dict`` with ``torch.save``; in a fresh Python process build the same
model and optimizer, ``torch.load`` the file with torch's default (``weights_only=True``), load
both states, step ``M`` more times. The losses and parameters must equal, bit for bit, those
of one uninterrupted run of ``K + M`` steps in this process. One subprocess resumes all
entries. Then: a pickle payload placed anywhere in a state is never executed.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.core.state import check_plain
from torchzero_bridge.testing.registry import ENTRIES, Entry, logging_closure, optimizer_classes

ROOT = Path(__file__).resolve().parents[1]
K, M = 2, 2
NAMES = [e.name for e in ENTRIES]
ABSTRACT = {"BridgeOptimizer", "DerivativeFreeOptimizer", "GradientEstimator"}

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # nevergrad/cma/optuna chatter on tiny budgets
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

RESUME = textwrap.dedent(
    """
    import json, sys, warnings
    import torch
    warnings.simplefilter("ignore")
    from torchzero_bridge.testing.registry import entry, logging_closure

    folder, names, m = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    out = {}
    for name in names:
        try:
            e = entry(name)
            model = e.problem()
            opt = e.factory(model.parameters())
            saved = torch.load(f"{folder}/{name}.pt")  # torch's default: weights_only=True
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            log = []
            closure = logging_closure(model, opt.zero_grad, log)
            losses = [float(opt.step(closure)) for _ in range(m)]
            params = [p.detach().clone() for p in model.parameters()]
            out[name] = {"losses": losses, "params": params, "evaluated": torch.stack(log) if log else None}
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    torch.save(out, f"{folder}/resumed.pt")
    """
)


def _run(
    e: Entry, steps: int, log: list[torch.Tensor] | None = None
) -> tuple[torch.nn.Module, torch.optim.Optimizer, list[float]]:
    """``steps`` steps from the entry's start; ``log`` gets the points evaluated after the first K steps."""
    model = e.problem()
    opt = e.factory(model.parameters())
    seen: list[torch.Tensor] = []
    closure = logging_closure(model, opt.zero_grad, seen)
    losses = []
    for i in range(steps):
        if i == K and log is not None:
            seen.clear()
        losses.append(float(opt.step(closure)))
    if log is not None:
        log.extend(seen)
    return model, opt, losses


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Save every entry after K steps here, resume all of them in one fresh process."""
    folder = tmp_path_factory.mktemp("ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in ENTRIES:
            model, opt, _ = _run(e, K)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, folder / f"{e.name}.pt")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", RESUME, str(folder), json.dumps(NAMES), str(M)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=folder,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"folder": folder, "results": torch.load(folder / "resumed.pt")}


def test_registry_covers_every_public_optimizer() -> None:
    public = {
        n
        for n in tzb.__all__
        if isinstance(getattr(tzb, n), type) and issubclass(getattr(tzb, n), torch.optim.Optimizer)
    }
    assert len(public - ABSTRACT) >= 27
    assert public - ABSTRACT <= optimizer_classes(), (
        f"not registered: {sorted(public - ABSTRACT - optimizer_classes())}"
    )
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_resumes_in_a_fresh_process_bit_for_bit(name: str, resumed: dict[str, Any]) -> None:
    e = next(x for x in ENTRIES if x.name == name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log: list[torch.Tensor] = []
        model, _, losses = _run(e, K + M, log)
    got = resumed["results"][name]
    assert "error" not in got, got.get("error")
    assert log and got["evaluated"] is not None, f"{name}: no evaluation after the checkpoint"
    assert torch.equal(got["evaluated"], torch.stack(log)), f"{name}: the resumed run evaluates other points"
    assert got["losses"] == losses[K:], f"{name}: losses after resuming differ"
    for a, b in zip(got["params"], model.parameters()):
        assert torch.equal(a, b.detach()), f"{name}: parameters after resuming differ"


@pytest.mark.parametrize("name", NAMES)
def test_state_is_tensors_and_plain_values(name: str, resumed: dict[str, Any]) -> None:
    saved = torch.load(resumed["folder"] / f"{name}.pt", weights_only=True)
    check_plain(saved["opt"])


# ---------------------------------------------------------------------- pickle payloads
class Payload:
    """Unpickling (or deep-copying) this object creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _injected(state: dict[str, Any], payload: Any) -> list[dict[str, Any]]:
    """Copies of ``state`` with ``payload`` in one field each: new keys, the old blob fields, inside values."""
    variants = []
    for section in ("torchzero_bridge", "bridge", "zeroth_order", "state", None):
        if section is not None and not isinstance(state.get(section), dict):
            continue
        for key in ("nevergrad", "sampler", "trials", "payload"):
            sd = {**state}
            if section is None:
                sd[key] = payload
            else:
                sd[section] = {**sd[section], key: payload}
            variants.append(sd)
    for section, inner in state.items():  # replace existing leaves one level down
        if isinstance(inner, dict):
            for key in list(inner)[:3]:
                variants.append({**state, section: {**inner, key: payload}})
    groups = [{**g, "bounds": payload} for g in state["param_groups"]]
    variants.append({**state, "param_groups": groups})
    return variants


@pytest.mark.parametrize("name", NAMES)
def test_pickle_payload_in_any_field_never_runs(name: str, tmp_path: Path) -> None:
    e = next(x for x in ENTRIES if x.name == name)
    marker = tmp_path / "ran"
    blob = pickle.dumps(Payload(marker))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, opt, _ = _run(e, 1)
        state = opt.state_dict()
        for payload in (blob, Payload(marker)):  # pickled bytes, and the live object itself
            for sd in _injected(state, payload):
                fresh = e.factory(e.problem().parameters())
                try:
                    fresh.load_state_dict(sd)
                except Exception:  # refusing the state is fine; running the payload is not
                    pass
                assert not marker.exists(), f"{name}: a payload ran during load_state_dict"
    # a file holding the object: torch's default load refuses it without running it
    path = tmp_path / "bad.pt"
    torch.save({**state, "bridge": Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()


def test_bridge_state_with_bytes_is_refused_by_name() -> None:
    """The old formats' nevergrad/optuna blobs are refused, not unpickled, in the current layout and the old one."""
    w = torch.zeros(2, dtype=torch.float64)
    opt = tzb.NevergradWrapper([w], "OnePlusOne", budget=6, seed=0)
    opt.step(lambda backward=True: (w**2).sum())
    sd = opt.state_dict()
    sd["torchzero_bridge"]["state"]["nevergrad"] = pickle.dumps(("anything",))
    with pytest.raises(TypeError, match=r"state_dict\['torchzero_bridge'\]\['state'\]\['nevergrad'\].*bytes"):
        tzb.NevergradWrapper([w], "OnePlusOne", budget=6).load_state_dict(sd)
    old = {k: v for k, v in sd.items() if k != "torchzero_bridge"}
    old["bridge"] = sd["torchzero_bridge"]["state"]
    with pytest.raises(TypeError, match=r"state_dict\['bridge'\]\['nevergrad'\].*bytes"):
        tzb.NevergradWrapper([w], "OnePlusOne", budget=6).load_state_dict(old)
