"""The one ``state_dict`` layout (``torchzero_bridge.core.state``) for every registered optimizer.

Each entry of :mod:`torchzero_bridge.testing.registry` must save ``{"state", "param_groups",
"torchzero_bridge"}`` with parameter indices as the only keys of ``"state"`` and the
optimizer-wide state under ``"torchzero_bridge"``; the state goes through ``torch.save`` and
``torch.load(weights_only=True)`` and, loaded into a fresh optimizer, continues exactly like
the run that was never interrupted. Checkpoints in the earlier layouts still load; malformed
ones are refused before anything changes.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.core.state import FORMAT, KEY, check_plain
from torchzero_bridge.testing.registry import ENTRIES, Entry, entry, logging_closure

K, M = 1, 2  # steps before the checkpoint, steps after it

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # nevergrad/cma/optuna chatter on tiny budgets
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


def _steps(model: torch.nn.Module, opt: torch.optim.Optimizer, n: int) -> tuple[list[float], list[torch.Tensor]]:
    log: list[torch.Tensor] = []
    closure = logging_closure(model, opt.zero_grad, log)
    return [float(opt.step(closure)) for _ in range(n)], log


def _saved(e: Entry) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model and optimizer state after K steps from the entry's start."""
    model = e.problem()
    opt = e.factory(model.parameters())
    _steps(model, opt, K)
    return model.state_dict(), opt.state_dict()


def _resume(e: Entry, model_sd: dict[str, Any], opt_sd: dict[str, Any]) -> tuple[list[float], list[torch.Tensor]]:
    model = e.problem()
    opt = e.factory(model.parameters())
    model.load_state_dict(model_sd)
    opt.load_state_dict(opt_sd)
    losses, log = _steps(model, opt, M)
    return losses, log + [p.detach().clone() for p in model.parameters()]


def _reference(e: Entry) -> tuple[list[float], list[torch.Tensor]]:
    """Losses of steps K+1..K+M of one uninterrupted run, the points evaluated there and the end point."""
    model = e.problem()
    opt = e.factory(model.parameters())
    _steps(model, opt, K)
    losses, log = _steps(model, opt, M)
    return losses, log + [p.detach().clone() for p in model.parameters()]


def _same(a: tuple[list[float], list[torch.Tensor]], b: tuple[list[float], list[torch.Tensor]]) -> bool:
    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))


@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_every_optimizer_saves_the_one_layout_and_continues_identically(name: str) -> None:
    e = entry(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_sd, sd = _saved(e)
        expected = _reference(e)
    assert set(sd) == {"state", "param_groups", KEY}, sorted(sd)
    assert all(type(k) is int for k in sd["state"]), list(sd["state"])
    own = sd[KEY]
    cls = type(e.factory(e.problem().parameters())).__name__
    assert set(own) == {"format", "class", "state"} and own["format"] == FORMAT and own["class"] == cls
    assert isinstance(own["state"], dict)
    check_plain(sd)
    buffer = io.BytesIO()
    torch.save({"model": model_sd, "opt": sd}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = _resume(e, loaded["model"], loaded["opt"])
    assert _same(got, expected), f"{name}: the resumed run differs from the uninterrupted one"


def _old_layout(sd: dict[str, Any], where: str) -> dict[str, Any]:
    """``sd`` rewritten in an earlier layout: a top-level ``where`` entry, or ``state[where]``."""
    old = {k: v for k, v in sd.items() if k != KEY}
    if where == "derivative_free":
        old["state"] = {**old["state"], where: sd[KEY]["state"]}
    else:
        old[where] = sd[KEY]["state"]
    return old


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("MinimizeWrapper[L-BFGS-B]", "bridge"),
        ("NevergradWrapper[OnePlusOne]", "bridge"),
        ("SPSA", "zeroth_order"),
        ("GradChain", "zeroth_order"),
        ("RandomWalk", "derivative_free"),
        ("SwarmOfOptimizers", "derivative_free"),
    ],
)
def test_checkpoints_in_the_earlier_layouts_still_load(name: str, where: str) -> None:
    e = entry(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_sd, sd = _saved(e)
        got = _resume(e, model_sd, _old_layout(sd, where))
        expected = _reference(e)
    assert _same(got, expected)


def _stepped_walk() -> tuple[torch.Tensor, tzb.RandomWalk, dict[str, Any]]:
    w = torch.tensor([1.0, -2.0])
    opt = tzb.RandomWalk([w], lr=0.3, seed=0)
    opt.step(lambda: float((w**2).sum()))
    return w, opt, opt.state_dict()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda sd: sd.pop(KEY), r"no 'torchzero_bridge' entry"),
        (lambda sd: sd[KEY].update(format=2), r"format 2 is not supported"),
        (lambda sd: sd[KEY].update(format=True), r"format True is not supported"),
        (lambda sd: sd[KEY].update(extra=1), r"expected the keys \['class', 'format', 'state'\]"),
        (lambda sd: sd.update({KEY: [1]}), r"expected the keys .* got list"),
        (lambda sd: sd[KEY].update({1: 0}), r"expected the keys .* got \['1', 'class'"),
        (lambda sd: sd[KEY].update({"class": "SimulatedAnnealing"}), r"saved by 'SimulatedAnnealing', not by a"),
        (lambda sd: sd[KEY].update(state=[1]), r"\['state'\]: expected a dict, got list"),
        (lambda sd: sd["state"].update(junk={}), r"keys must be parameter indices, got 'junk'"),
        (lambda sd: sd.pop("param_groups"), r"expected torch's 'state' dict and 'param_groups' list"),
        (lambda sd: sd[KEY]["state"].update(best_x=torch.zeros(5)), r"saved for 5 parameter entries"),
    ],
)
def test_a_malformed_state_is_refused_before_anything_changes(change: Any, error: str) -> None:
    _, opt, sd = _stepped_walk()
    before = opt.method_state["best_x"].clone(), opt.rng.state_dict()
    sd[KEY]["state"]["best_x"] = torch.zeros(2)
    opt.param_groups[0]["lr"] = 0.7
    change(sd)
    with pytest.raises(ValueError, match=error):
        opt.load_state_dict(sd)
    assert torch.equal(opt.method_state["best_x"], before[0]) and opt.param_groups[0]["lr"] == 0.7
    assert torch.equal(opt.rng.state_dict()["states"]["cpu"], before[1]["states"]["cpu"])


def test_a_base_class_state_loads_into_a_subclass_but_not_the_reverse() -> None:
    class MyWalk(tzb.RandomWalk):
        pass

    w = torch.tensor([1.0, -2.0])
    base = tzb.RandomWalk([w], lr=0.3, seed=0)
    base.step(lambda: float((w**2).sum()))
    mine = MyWalk([w], lr=0.3, seed=0)
    mine.load_state_dict(base.state_dict())
    assert mine.nfev == base.nfev > 0
    with pytest.raises(ValueError, match="saved by 'MyWalk', not by a RandomWalk"):
        tzb.RandomWalk([w], lr=0.3).load_state_dict(mine.state_dict())


def test_the_saved_state_is_a_copy_of_the_live_one() -> None:
    w, opt, sd = _stepped_walk()
    saved = sd[KEY]["state"]["best_x"].clone()
    for _ in range(5):
        opt.step(lambda: float((w**2).sum()))
    opt.method_state["best_x"].add_(1.0)  # even an in-place change of the live state
    assert torch.equal(sd[KEY]["state"]["best_x"], saved)
    opt.load_state_dict(sd)
    sd[KEY]["state"]["best_x"].add_(1.0)  # and the loaded state does not alias the dict it came from
    assert torch.equal(opt.method_state["best_x"], saved)


def test_an_option_that_is_not_plain_data_is_named_when_saving() -> None:
    w = torch.zeros(2)
    opt = tzb.RandomWalk([w], lr=0.3, seed=0)
    opt.param_groups[0]["note"] = object()
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['note'\]: a object cannot be saved"):
        opt.state_dict()
