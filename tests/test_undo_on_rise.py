"""UndoOnRise: never accepts a step that raised the loss (deterministic objective), counted evaluations."""

from __future__ import annotations

import itertools

import pytest
import torch

import torchzero_bridge as tzb


def _rosen(x: torch.Tensor) -> torch.Tensor:
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def _setup(**kw):
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.UndoOnRise([x], lambda p: torch.optim.Adam(p, lr=0.3), **kw)
    calls = [0]

    def closure(backward: bool = True) -> torch.Tensor:
        calls[0] += 1
        opt.zero_grad()
        loss = _rosen(x)
        if backward:
            loss.backward()
        return loss

    return x, opt, closure, calls


@pytest.mark.parametrize("on_rise", ["undo", "opposite"])
def test_never_accepts_a_rise_and_counts_evaluations(on_rise: str) -> None:
    x, opt, closure, calls = _setup(on_rise=on_rise, grow=1.5)  # lr keeps growing back: rises keep coming
    rises = 0
    for _ in range(60):
        before = x.detach().clone()
        undone, opposite, c0 = opt.n_undone, opt.n_opposite, calls[0]
        loss = opt.step(closure)
        after = x.detach().clone()
        with torch.no_grad():
            assert float(_rosen(after)) <= float(_rosen(before))  # computed directly, not by the wrapper
            assert float(loss) == float(_rosen(after))
        rose = opt.n_undone > undone or opt.n_opposite > opposite
        rises += rose
        if opt.n_undone > undone:
            assert torch.equal(after, before)
        # the inner Adam's closure run + the re-evaluation (+ the opposite point after a rise)
        assert calls[0] - c0 == 2 + (on_rise == "opposite" and rose)
    assert 5 <= rises <= 55, f"{rises} rises in 60 steps: the setting must produce both outcomes"
    assert opt.nfev == calls[0] == 120 + (rises if on_rise == "opposite" else 0)


def test_matches_a_hand_written_undo_loop() -> None:
    x, opt, closure, _ = _setup(shrink=1.0)
    y = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([y], lr=0.3)
    for _ in range(40):
        opt.step(closure)
        y0 = y.detach().clone()
        adam.zero_grad()
        f0 = _rosen(y)
        f0.backward()
        adam.step()
        with torch.no_grad():
            if float(_rosen(y)) > float(f0):
                y.copy_(y0)
        assert torch.equal(x, y)


def test_restore_state_rolls_back_the_inner_optimizer() -> None:
    _x, opt, closure, _ = _setup(restore_state=True, shrink=0.5)
    seen = 0
    for _ in range(40):
        st = opt.opt.state_dict()["state"]
        saved = {k: v.clone() for k, v in st[0].items()} if st else None
        undone = opt.n_undone
        lr = opt.opt.param_groups[0]["lr"]
        opt.step(closure)
        if opt.n_undone > undone and saved is not None:
            seen += 1
            now = opt.opt.state_dict()["state"][0]
            for k, v in saved.items():
                assert torch.equal(now[k], v), k
            assert opt.opt.param_groups[0]["lr"] == lr * 0.5
    assert seen >= 2


def test_restore_state_without_shrink_repeats_the_same_rejected_step() -> None:
    """The documented trap: a deterministic objective and a fully restored inner state try the same step again."""
    x, opt, closure, _ = _setup(restore_state=True, shrink=1.0)
    start = x.detach().clone()
    for _ in range(5):
        opt.step(closure)
    assert opt.n_undone == 5 and torch.equal(x, start) and not opt.opt.state


def test_default_keeps_what_the_rejected_step_taught_the_inner_optimizer() -> None:
    _x, opt, closure, _ = _setup(shrink=1.0)
    for _ in range(20):
        opt.step(closure)
    assert opt.n_undone >= 1
    assert int(opt.opt.state_dict()["state"][0]["step"]) == 20


def test_shrink_and_grow_scale_the_inner_lr() -> None:
    _x, opt, closure, _ = _setup(grow=1.5)
    lr = 0.3
    for _ in range(30):
        undone, opposite = opt.n_undone, opt.n_opposite
        opt.step(closure)
        lr *= 0.5 if (opt.n_undone > undone or opt.n_opposite > opposite) else 1.5
        assert opt.opt.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-12)
    assert 0 < opt.n_undone < 30


def test_interrupt_in_the_re_evaluation_restores_the_start_and_the_state() -> None:
    x, opt, closure, _calls = _setup(restore_state=True, shrink=0.5)
    for _ in range(10):  # until a step stands and Adam has state
        opt.step(closure)
        if opt.opt.state:
            break
    start = x.detach().clone()
    step_before = opt.opt.state_dict()["state"][0]["step"].clone()

    def failing(backward: bool = True) -> torch.Tensor:
        if not backward:  # the wrapper's re-evaluation
            raise KeyboardInterrupt
        return closure(backward)

    with pytest.raises(KeyboardInterrupt):
        opt.step(failing)
    assert torch.equal(x, start)
    assert torch.equal(opt.opt.state_dict()["state"][0]["step"], step_before)


def test_zeroth_order_inner_estimator() -> None:
    w = torch.zeros(3, dtype=torch.float64)
    opt = tzb.UndoOnRise([w], tzb.SPSA(h=1e-3, seed=0, opt=lambda p: torch.optim.SGD(p, lr=0.4)))
    f = [float(opt.step(lambda backward=True: ((w - 1) ** 2).sum())) for _ in range(30)]
    assert all(b <= a for a, b in itertools.pairwise(f))
    assert opt.nfev == 30 * 3  # SPSA's two evaluations + the re-evaluation


def test_construction_errors() -> None:
    w = torch.zeros(2, requires_grad=True)
    sgd = (torch.optim.SGD, {"lr": 0.1})
    with pytest.raises(ValueError, match="on_rise"):
        tzb.UndoOnRise([w], sgd, on_rise="redo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shrink"):
        tzb.UndoOnRise([w], sgd, shrink=2.0)
    with pytest.raises(ValueError, match="grow"):
        tzb.UndoOnRise([w], sgd, grow=0.5)
    with pytest.raises(TypeError, match="opt is required"):
        tzb.UndoOnRise([w], None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="closure"):
        tzb.UndoOnRise([w], sgd).step()
