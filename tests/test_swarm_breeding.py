"""SwarmOfOptimizers breeding: state crossover, hyperparameter mutation, reset to the saved state, size schedules."""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.zeroth_order.breeding import cross_state, mutate_groups

CENTER = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)


def _params() -> list[torch.Tensor]:
    return [
        torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64, requires_grad=True),
        torch.zeros(1, dtype=torch.float64, requires_grad=True),
    ]


def _closure(params: list[torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Shifted Rastrigin-like loss on both tensors (ranks the members differently every step)."""

    def closure(backward: bool = True) -> torch.Tensor:
        for p in params:
            p.grad = None
        x = torch.cat([p.reshape(-1) for p in params]) - CENTER
        loss = (x**2).sum() + 2.0 * (1 - torch.cos(3 * x)).sum()
        if backward:
            loss.backward()
        return loss

    return closure


def _adam(q: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(q, lr=1e-2)


def _swarm(params: list[torch.Tensor], factory: Any = _adam, **kw: Any) -> tzb.SwarmOfOptimizers:
    return tzb.SwarmOfOptimizers(params, factory, **{"n": 4, "patience": 1, "init_std": 1.0, "seed": 0, **kw})


def _replaced(before: list[torch.optim.Optimizer], opt: tzb.SwarmOfOptimizers) -> list[int]:
    return [i for i, m in enumerate(before) if opt.members[i] is not m]


def _parents(opt: tzb.SwarmOfOptimizers) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two best members' state_dicts (replaced members have fitness inf, parents are never replaced)."""
    order = torch.argsort(opt.method_state["fitness"], stable=True)
    return opt.members[int(order[0])].state_dict(), opt.members[int(order[1])].state_dict()


# ------------------------------------------------------------------ the pure functions


def _adam_entry(step: float, m: list[float], v: list[float]) -> dict[str, torch.Tensor]:
    return {"step": torch.tensor(step), "exp_avg": torch.tensor(m), "exp_avg_sq": torch.tensor(v)}


A = {
    "state": {0: _adam_entry(4.0, [1.0, 2.0], [0.5, 0.25]), 1: _adam_entry(4.0, [-3.0], [9.0])},
    "param_groups": [{"params": [0, 1], "lr": 0.1, "betas": (0.9, 0.999)}],
}
B = {
    "state": {0: _adam_entry(7.0, [3.0, -2.0], [1.5, 0.75]), 1: _adam_entry(7.0, [1.0], [1.0])},
    "param_groups": [{"params": [0, 1], "lr": 0.3, "betas": (0.8, 0.99)}],
}


def test_swap_takes_each_parameter_entry_whole_from_one_parent() -> None:
    seen = set()
    for seed in range(40):
        child = cross_state(A, B, "swap", torch.Generator().manual_seed(seed))
        assert child["param_groups"] == A["param_groups"]
        for i in (0, 1):
            parent = next(p for p in (A, B) if torch.equal(p["state"][i]["step"], child["state"][i]["step"]))
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(child["state"][i][key], parent["state"][i][key])
                assert child["state"][i][key] is not parent["state"][i][key]  # a copy
            seen.add((i, parent is A))
    assert seen == {(0, True), (0, False), (1, True), (1, False)}


def test_swap_picks_each_parent_about_half_the_time_and_follows_the_seed() -> None:
    gen = torch.Generator().manual_seed(3)
    picks = [float(cross_state(A, B, "swap", gen)["state"][0]["step"]) for _ in range(400)]
    assert 160 <= picks.count(4.0) <= 240
    again = torch.Generator().manual_seed(3)
    assert picks[:20] == [float(cross_state(A, B, "swap", again)["state"][0]["step"]) for _ in range(20)]


def test_average_is_the_hand_computed_mean_with_the_step_of_the_better_parent() -> None:
    b = copy.deepcopy(B)
    b["state"][2] = {"momentum_buffer": torch.tensor([5.0])}  # only in the second parent
    b["state"][1]["count"] = torch.tensor([2, 4])  # an integer tensor: copied, never averaged
    a = copy.deepcopy(A)
    a["state"][1]["count"] = torch.tensor([6, 8])
    child = cross_state(a, b, "average", torch.Generator())["state"]
    assert child[0]["exp_avg"].tolist() == [2.0, 0.0]
    assert child[0]["exp_avg_sq"].tolist() == [1.0, 0.5]
    assert child[1]["exp_avg"].tolist() == [-1.0] and child[1]["exp_avg_sq"].tolist() == [5.0]
    assert float(child[0]["step"]) == 4.0 and float(child[1]["step"]) == 4.0
    assert child[1]["count"].tolist() == [6, 8]
    assert child[2]["momentum_buffer"].tolist() == [5.0]
    assert cross_state(A, B, "none", torch.Generator())["state"] == {}


def test_mutation_keeps_lr_positive_and_fractions_inside_the_unit_interval() -> None:
    groups = [{"params": [0], "lr": 0.01, "betas": (0.9, 0.999), "momentum": 0.0, "eps": 1e-8}] * 300
    out = mutate_groups(groups, {"lr": 0.3, "betas": 20.0, "momentum": 1.0}, torch.Generator().manual_seed(0))
    logs = torch.tensor([math.log(g["lr"] / 0.01) for g in out])
    assert all(g["lr"] > 0 for g in out)
    assert abs(float(logs.std()) - 0.3) < 0.04 and abs(float(logs.mean())) < 0.06  # log-normal, sigma 0.3
    assert all(0.0 < b < 1.0 for g in out for b in g["betas"])  # huge noise, still inside (0, 1)
    assert all(g["momentum"] == 0.0 and g["eps"] == 1e-8 for g in out)  # zero stays zero; eps not named
    assert groups[0]["lr"] == 0.01  # the input is not changed
    again = mutate_groups(groups, {"lr": 0.3, "betas": 20.0, "momentum": 1.0}, torch.Generator().manual_seed(0))
    assert [g["lr"] for g in again] == [g["lr"] for g in out]


# ------------------------------------------------------------------ in a swarm


@pytest.mark.parametrize("how", ["average", "swap"])
def test_children_inherit_the_parents_adam_state(how: str) -> None:
    params = _params()
    opt, closure = _swarm(params, state_crossover=how), _closure(params)
    before = list(opt.members)
    opt.step(closure)  # patience 1: the worse half is replaced at the end of this step
    replaced = _replaced(before, opt)
    assert len(replaced) == 2
    sd_a, sd_b = _parents(opt)
    for i in replaced:
        state = opt.members[i].state_dict()["state"]
        assert sorted(state) == [0, 1]
        for k in (0, 1):
            ea, eb, ec = sd_a["state"][k], sd_b["state"][k], state[k]
            if how == "average":
                torch.testing.assert_close(ec["exp_avg"], (ea["exp_avg"] + eb["exp_avg"]) / 2, rtol=0, atol=0)
                torch.testing.assert_close(ec["exp_avg_sq"], (ea["exp_avg_sq"] + eb["exp_avg_sq"]) / 2, rtol=0, atol=0)
                assert torch.equal(ec["step"], ea["step"])
            else:
                assert any(all(torch.equal(ec[key], e[key]) for key in ec) for e in (ea, eb))
            assert ec["exp_avg"] is not ea["exp_avg"] and ec["exp_avg"] is not eb["exp_avg"]
    for _ in range(3):
        opt.step(closure)  # the children step with the inherited state


def test_default_children_start_with_empty_state() -> None:
    params = _params()
    opt = _swarm(params)
    before = list(opt.members)
    opt.step(_closure(params))
    assert all(len(opt.members[i].state) == 0 for i in _replaced(before, opt))


def test_reset_state_gives_children_the_slots_first_step_state() -> None:
    params = _params()
    opt, closure = _swarm(params, patience=2, reset_state=True), _closure(params)
    opt.step(closure)
    first = [copy.deepcopy(m.state_dict()["state"]) for m in opt.members]  # after each slot's first step
    before = list(opt.members)
    opt.step(closure)
    replaced = _replaced(before, opt)
    assert replaced
    for i in replaced:
        state = opt.members[i].state_dict()["state"]
        for k in (0, 1):
            for key in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(state[k][key], first[i][k][key])


def test_reset_of_named_entries_resets_momentum_and_inherits_the_rest() -> None:
    params = _params()
    opt, closure = _swarm(params, patience=2, state_crossover="swap", reset_state=("exp_avg",)), _closure(params)
    opt.step(closure)
    first = [copy.deepcopy(m.state_dict()["state"]) for m in opt.members]
    before = list(opt.members)
    opt.step(closure)
    sd_a, sd_b = _parents(opt)
    for i in _replaced(before, opt):
        state = opt.members[i].state_dict()["state"]
        for k in (0, 1):
            assert torch.equal(state[k]["exp_avg"], first[i][k]["exp_avg"])
            assert any(torch.equal(state[k]["exp_avg_sq"], p["state"][k]["exp_avg_sq"]) for p in (sd_a, sd_b))


def _run(steps: int, **kw: Any) -> tuple[tzb.SwarmOfOptimizers, list[torch.Tensor], list[float]]:
    params = _params()
    opt, closure = _swarm(params, **kw), _closure(params)
    return opt, params, [float(opt.step(closure)) for _ in range(steps)]


def test_mutated_lr_is_positive_inherited_from_the_best_and_follows_the_seed() -> None:
    opt, _, losses = _run(6, mutate={"lr": 0.5, "betas": 2.0})
    lrs = [m.param_groups[0]["lr"] for m in opt.members]
    assert any(lr != 1e-2 for lr in lrs) and all(lr > 0 for lr in lrs)
    assert all(0 < b < 1 for m in opt.members for b in m.param_groups[0]["betas"])
    again, _, losses_again = _run(6, mutate={"lr": 0.5, "betas": 2.0})
    assert [m.param_groups[0]["lr"] for m in again.members] == lrs and losses_again == losses
    other, _, _ = _run(6, mutate={"lr": 0.5, "betas": 2.0}, seed=1)
    assert [m.param_groups[0]["lr"] for m in other.members] != lrs


BREED = {"state_crossover": "swap", "mutate": True, "reset_state": ("exp_avg",), "size_schedule": "linear"}


def test_state_dict_mid_run_resumes_bit_for_bit() -> None:
    whole, whole_params, whole_losses = _run(10, **BREED)
    half, half_params, _ = _run(5, **BREED)
    buffer = io.BytesIO()
    torch.save(half.state_dict(), buffer)
    buffer.seek(0)
    params = [p.detach().clone().requires_grad_(True) for p in half_params]
    resumed = _swarm(params, **{**BREED, "seed": 123})
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    closure = _closure(params)
    losses = [float(resumed.step(closure)) for _ in range(5)]
    assert losses == whole_losses[5:]
    assert all(torch.equal(a, b) for a, b in zip(params, whole_params))
    assert len(resumed.members) == len(whole.members) == 4 + 9  # linear: n + step
    assert [m.state_dict()["param_groups"] for m in resumed.members] == [
        m.state_dict()["param_groups"] for m in whole.members
    ]
    assert torch.equal(resumed.method_state["positions"], whole.method_state["positions"])


def test_size_schedule_grows_the_swarm_with_children_of_the_best_two() -> None:
    params = _params()
    opt = _swarm(params, factory=lambda q: torch.optim.SGD(q, lr=0.0), patience=100, size_schedule=lambda t: 2 + t // 2)
    closure = _closure(params)
    losses, counts, mixed = [float(opt.step(closure))], [len(opt.members)], 0
    for _ in range(5):
        st = opt.method_state
        X, order = st["positions"].clone(), torch.argsort(st["fitness"], stable=True)
        losses.append(float(opt.step(closure)))
        counts.append(len(opt.members))
        for row in opt.method_state["positions"][X.shape[0] :]:  # SGD with lr=0: only births change positions
            assert all(bool((row[c] == X[order[:2], c]).any()) for c in range(row.numel()))
            if int((X[order[0]] != X[order[1]]).sum()) > 1:  # then never a copy of a parent
                assert not torch.equal(row, X[order[0]]) and not torch.equal(row, X[order[1]])
                mixed += 1
    assert counts == [2, 2, 3, 3, 4, 4] and mixed >= 1
    assert losses == sorted(losses, reverse=True)
    assert opt.method_state["positions"].shape == (4, 4) and opt.nfev == sum(counts) + 1
    fixed = _swarm(params, factory=lambda q: torch.optim.SGD(q, lr=0.0), n=3)
    fixed.step(closure)
    fixed.n = 5  # a larger n between steps also grows it
    fixed.step(closure)
    assert len(fixed.members) == 5 and fixed.method_state["positions"].shape == (5, 4)


@pytest.mark.parametrize("factory", [lambda q: torch.optim.SGD(q, lr=0.05), lambda q: tzb.RandomWalk(q, lr=0.3)])
def test_members_without_state_breed(factory: Any) -> None:
    params = _params()
    opt = _swarm(params, factory=factory, state_crossover="average", mutate={"lr": 0.3})
    closure = _closure(params)
    losses = [float(opt.step(closure)) for _ in range(5)]
    assert losses == sorted(losses, reverse=True)
    assert len({m.param_groups[0]["lr"] for m in opt.members}) > 1
    if isinstance(opt.members[0], tzb.RandomWalk):  # each child keeps its own generator, never a parent's
        assert len({m.rng.seed for m in opt.members}) == len(opt.members)


def test_breeding_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"SwarmOfOptimizers: state_crossover expected one of .*'mix'"):
        _swarm(_params(), state_crossover="mix")
    with pytest.raises(ValueError, match=r"SwarmOfOptimizers: mutate names 'lrr', an option .* \(they have \["):
        _swarm(_params(), mutate={"lrr": 0.1})
    with pytest.raises(ValueError, match=r"SwarmOfOptimizers: mutate\['lr'\] expected a finite number >= 0"):
        _swarm(_params(), mutate={"lr": -1.0})
    with pytest.raises(TypeError, match=r"SwarmOfOptimizers: mutate names 'foreach', whose value None"):
        _swarm(_params(), mutate={"foreach": 0.1})
    with pytest.raises(TypeError, match=r"SwarmOfOptimizers: reset_state expected True, False or state entry"):
        _swarm(_params(), reset_state=3)
    with pytest.warns(tzb.IgnoredOptionWarning, match="state_crossover is ignored: reset_state=True"):
        _swarm(_params(), state_crossover="swap", reset_state=True)
    with pytest.warns(tzb.IgnoredOptionWarning, match="reset_state is ignored"):
        _swarm(_params(), reset_state=("exp_avg",))
    params = _params()
    opt = _swarm(params, state_crossover="swap", reset_state=("momentum_buffer",))
    with pytest.raises(
        ValueError, match=r"reset_state names \['momentum_buffer'\], .*\['exp_avg', 'exp_avg_sq', 'step'\]"
    ):
        opt.step(_closure(params))
