"""GradChain: Adam on Nesterov-momentum gradients, estimator first stages, state, errors."""

from __future__ import annotations

import pytest
import torch

from torchzero_bridge.zeroth_order import SPSA, GradChain, RandomGrad

X0 = torch.tensor([-1.1, 2.5, 0.4, -0.3, 1.7, 0.9], dtype=torch.float64)


def rosen(x: torch.Tensor) -> torch.Tensor:
    return torch.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def grad_closure(w: torch.Tensor, opt: torch.optim.Optimizer):
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = rosen(w)
        loss.backward()
        return loss

    return closure


def hand_adam_on_nesterov(steps: int, mu: float, lr: float) -> torch.Tensor:
    """Written out from the update rules, no torch optimizer involved."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    x = X0.clone()
    buf = m = v = None
    for t in range(1, steps + 1):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(rosen(xr), xr)
        buf = g.clone() if buf is None else mu * buf + g
        ng = g + mu * buf  # Nesterov
        m = (1 - b1) * ng if m is None else b1 * m + (1 - b1) * ng
        v = (1 - b2) * ng**2 if v is None else b2 * v + (1 - b2) * ng**2
        mhat = m / (1 - b1**t)
        vhat = v / (1 - b2**t)
        x = x - lr * mhat / (vhat.sqrt() + eps)
    return x


@pytest.mark.parametrize(
    "stages",
    [
        [lambda p: torch.optim.SGD(p, lr=1, momentum=0.9, nesterov=True), lambda p: torch.optim.Adam(p, lr=1e-2)],
        [(torch.optim.SGD, {"lr": 1, "momentum": 0.9, "nesterov": True}), (torch.optim.Adam, {"lr": 1e-2})],
    ],
    ids=["factories", "class-kwargs pairs"],
)
def test_adam_on_nesterov_identity_over_50_steps(stages) -> None:
    w = X0.clone().requires_grad_(True)
    chain = GradChain([w], stages)
    for _ in range(50):
        chain.step(grad_closure(w, chain))
    expected = hand_adam_on_nesterov(50, 0.9, 1e-2)
    assert float((w.detach() - expected).abs().max()) < 1e-6
    # and it is not just Adam on the plain gradient
    plain = X0.clone().requires_grad_(True)
    adam = torch.optim.Adam([plain], lr=1e-2)
    for _ in range(50):
        adam.step(grad_closure(plain, adam))
    assert float((plain.detach() - expected).abs().max()) > 1e-3


def test_single_stage_is_that_optimizer() -> None:
    a = X0.clone().requires_grad_(True)
    b = X0.clone().requires_grad_(True)
    chain = GradChain([a], [lambda p: torch.optim.Adam(p, lr=1e-2)])
    adam = torch.optim.Adam([b], lr=1e-2)
    for _ in range(10):
        chain.step(grad_closure(a, chain))
        adam.step(grad_closure(b, adam))
    assert torch.equal(a, b)


def test_estimator_first_stage_is_zeroth_order_and_equals_opt_form() -> None:
    a = X0.clone().requires_grad_(True)
    b = X0.clone().requires_grad_(True)
    calls = {"n": 0, "backward": 0}

    def closure_for(w):
        def closure(backward: bool = True) -> torch.Tensor:
            calls["n"] += 1
            loss = rosen(w)
            if backward:
                calls["backward"] += 1
                loss.backward()
            return loss

        return closure

    chain = GradChain([a], [SPSA(h=1e-3, seed=0), (torch.optim.Adam, {"lr": 1e-2})])
    direct = SPSA([b], h=1e-3, seed=0, opt=lambda p: torch.optim.Adam(p, lr=1e-2))
    for _ in range(20):
        la = chain.step(closure_for(a))
        lb = direct.step(closure_for(b))
        assert la.item() == lb.item()
    assert torch.equal(a, b)
    assert calls == {"n": 80, "backward": 0}


def test_estimator_with_momentum_stage() -> None:
    w = X0[:2].clone().requires_grad_(True)
    chain = GradChain(
        [w],
        [
            SPSA(h=1e-3, n_samples=2, seed=0),
            lambda p: torch.optim.SGD(p, lr=1, momentum=0.9),
            (torch.optim.Adam, {"lr": 2e-2}),
        ],
    )
    start = float(rosen(w.detach()))
    for _ in range(300):
        loss = chain.step(lambda backward=True: rosen(w))
    assert loss.item() < 0.1 * start


def test_random_grad_first_stage_hands_its_update() -> None:
    a = X0[:2].clone().requires_grad_(True)
    b = X0[:2].clone().requires_grad_(True)
    chain = GradChain([a], [lambda p: RandomGrad(p, lr=1e-2, seed=1), lambda p: torch.optim.SGD(p, lr=1.0)])
    solo = RandomGrad([b], lr=1e-2, seed=1)
    for _ in range(30):
        chain.step(lambda backward=True: rosen(a))
        solo.step(lambda backward=True: rosen(b))
    assert torch.allclose(a, b, atol=1e-12)


def test_state_dict_round_trip() -> None:
    def make(w):
        return GradChain(
            [w],
            [SPSA(h=1e-3, seed=2), lambda p: torch.optim.SGD(p, lr=1, momentum=0.9), (torch.optim.Adam, {"lr": 1e-2})],
        )

    w = X0.clone().requires_grad_(True)
    chain = make(w)
    for _ in range(5):
        chain.step(lambda backward=True: rosen(w))
    saved_w, saved = w.detach().clone(), chain.state_dict()
    for _ in range(5):
        chain.step(lambda backward=True: rosen(w))
    w2 = saved_w.clone().requires_grad_(True)
    chain2 = make(w2)
    chain2.load_state_dict(saved)
    for _ in range(5):
        chain2.step(lambda backward=True: rosen(w2))
    assert torch.equal(w2.detach(), w.detach())


def test_group_lr_goes_to_the_last_stage_only_two_groups() -> None:
    """The issue's example: group ``a`` with lr=0.1 must not get lr * lr on its update."""
    a0, b0 = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 3.0], dtype=torch.float64)
    a, b = a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    chain = GradChain(
        [{"params": [a], "lr": 0.1}, {"params": [b]}],
        [(torch.optim.SGD, {"lr": 1, "momentum": 0.9}), (torch.optim.SGD, {"lr": 0.01})],
    )
    assert [g["lr"] for g in chain.stages[0].param_groups] == [1, 1]
    assert [g["lr"] for g in chain.stages[1].param_groups] == [0.1, 0.01]

    def closure() -> torch.Tensor:
        chain.zero_grad()
        loss = (a**2).sum() + 3 * (b**2).sum()
        loss.backward()
        return loss

    # by hand: heavy-ball momentum (lr 1) handed on, then plain SGD with each group's final lr
    xa, xb, ba, bb = a0.clone(), b0.clone(), None, None
    for _ in range(15):
        chain.step(closure)
        ga, gb = 2 * xa, 6 * xb
        ba = ga.clone() if ba is None else 0.9 * ba + ga
        bb = gb.clone() if bb is None else 0.9 * bb + gb
        xa, xb = xa - 0.1 * ba, xb - 0.01 * bb
    torch.testing.assert_close(a.detach(), xa, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.detach(), xb, rtol=1e-12, atol=1e-12)


def test_an_option_only_an_earlier_stage_has_goes_there() -> None:
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
    chain = GradChain(
        [{"params": [a], "momentum": 0.5, "h": 1e-2}, {"params": [b]}],
        [SPSA(h=1e-3), (torch.optim.SGD, {"lr": 1, "momentum": 0.9}), (torch.optim.Adam, {"lr": 1e-2})],
    )
    assert [g["h"] for g in chain.stages[0].param_groups] == [1e-2, 1e-3]
    assert [g["momentum"] for g in chain.stages[1].param_groups] == [0.5, 0.9]
    assert "momentum" not in chain.stages[2].param_groups[0]
    assert "h" not in chain.stages[1].param_groups[0] and "h" not in chain.stages[2].param_groups[0]


def test_group_options_for_constructed_or_unknown_stages_warn() -> None:
    from torchzero_bridge.errors import IgnoredOptionWarning

    a = torch.zeros(2, requires_grad=True)
    adam = torch.optim.Adam([a], lr=1e-3)
    with pytest.warns(IgnoredOptionWarning, match=r"param_groups\[0\] option 'lr' is ignored.*optimizers\[1\]"):
        chain = GradChain([{"params": [a], "lr": 0.5}], [(torch.optim.SGD, {"lr": 1.0}), adam])
    assert chain.stages[0].param_groups[0]["lr"] == 1.0 and adam.param_groups[0]["lr"] == 1e-3
    with pytest.warns(IgnoredOptionWarning, match="option 'bounds' is ignored: no stage has this option"):
        GradChain([{"params": [a], "bounds": (0, 1)}], [(torch.optim.SGD, {"lr": 1.0})])


def test_add_param_group_reaches_every_stage() -> None:
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
    chain = GradChain([a], [(torch.optim.SGD, {"lr": 1, "momentum": 0.9}), (torch.optim.SGD, {"lr": 0.01})])
    chain.add_param_group({"params": [b], "lr": 0.3})
    assert [g["lr"] for g in chain.stages[0].param_groups] == [1, 1]
    assert [g["lr"] for g in chain.stages[1].param_groups] == [0.01, 0.3]
    assert chain.stages[1].param_groups[1]["params"][0] is b


def test_grad_none_params_are_skipped() -> None:
    a = torch.ones(2, requires_grad=True)
    unused = torch.ones(2, requires_grad=True)
    chain = GradChain([a, unused], [lambda p: torch.optim.SGD(p, lr=1, momentum=0.5), (torch.optim.SGD, {"lr": 0.1})])

    def closure() -> torch.Tensor:
        chain.zero_grad()
        loss = (a**2).sum()
        loss.backward()
        return loss

    chain.step(closure)
    assert unused.grad is None and torch.equal(unused, torch.ones(2))
    assert torch.allclose(a.detach(), torch.full((2,), 0.8))


def test_errors() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="optimizers is empty"):
        GradChain([w], [])
    with pytest.raises(ValueError, match=r"optimizers\[1\] \(SPSA\) evaluates the closure itself"):
        GradChain([w], [(torch.optim.SGD, {"lr": 1.0}), SPSA()])
    with pytest.raises(ValueError, match=r"optimizers\[1\] \(LBFGS\) evaluates the closure itself"):
        GradChain([w], [(torch.optim.SGD, {"lr": 1.0}), torch.optim.LBFGS([w])])
    other = torch.zeros(3, requires_grad=True)
    with pytest.raises(
        ValueError,
        match=r"optimizers\[0\] \(Adam\) was constructed over other tensors than GradChain's parameters \("
        r"missing from Adam: GradChain\.param_groups\[0\]\[0\] \(shape \(2,\)\); "
        r"not GradChain's: Adam\.param_groups\[0\]\[0\] \(shape \(3,\)\)\)",
    ):
        GradChain([w], [torch.optim.Adam([other])])
    with pytest.raises(TypeError, match=r"\(class, kwargs dict\) pair"):
        GradChain([w], [(torch.optim.Adam, 0.1)])
    with pytest.raises(TypeError, match=r"must build a torch\.optim\.Optimizer"):
        GradChain([w], [lambda p: None])
    with pytest.raises(ValueError, match="over other tensors"):
        GradChain([w], [lambda p: torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)])
    with pytest.raises(TypeError, match="expected a list of stages"):
        GradChain([w], "adam")  # type: ignore[arg-type]
    bound = SPSA([w])  # an estimator bound to the same tensors is a constructed first stage
    assert GradChain([w], [bound]).stages[0] is bound


def test_constructed_sgd_nesterov_then_adam_equals_hand_written() -> None:
    w = X0.clone().requires_grad_(True)
    sgd = torch.optim.SGD([w], lr=1, momentum=0.9, nesterov=True)
    adam = torch.optim.Adam([w], lr=1e-2)
    chain = GradChain([w], [sgd, adam])
    assert chain.stages == [sgd, adam]
    for _ in range(50):
        chain.step(grad_closure(w, chain))
    assert float((w.detach() - hand_adam_on_nesterov(50, 0.9, 1e-2)).abs().max()) < 1e-6


def test_constructed_stages_in_other_groupings_are_accepted() -> None:
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    sgd = torch.optim.SGD([{"params": [b]}, {"params": [a], "lr": 0.5}], lr=1.0)
    chain = GradChain([a, b], [sgd])
    assert chain.stages[0] is sgd


def test_state_dict_round_trip_with_constructed_stages() -> None:
    def make(w: torch.Tensor) -> GradChain:
        return GradChain(
            [w],
            [torch.optim.SGD([w], lr=1, momentum=0.9, nesterov=True), torch.optim.Adam([w], lr=1e-2)],
        )

    w = X0.clone().requires_grad_(True)
    chain = make(w)
    for _ in range(5):
        chain.step(grad_closure(w, chain))
    saved_w, saved = w.detach().clone(), chain.state_dict()
    assert saved["torchzero_bridge"]["state"]["stages"][1]["state"][0]["step"] == 5  # Adam's own state is carried
    for _ in range(5):
        chain.step(grad_closure(w, chain))
    w2 = saved_w.clone().requires_grad_(True)
    chain2 = make(w2)
    chain2.load_state_dict(saved)
    for _ in range(5):
        chain2.step(grad_closure(w2, chain2))
    assert torch.equal(w2.detach(), w.detach())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_probe_never_reaches_a_later_stage(bad: float) -> None:
    from torchzero_bridge.errors import NonFiniteLossWarning

    w = X0[:3].clone().requires_grad_(True)
    chain = GradChain([w], [SPSA(h=1e-3, seed=0), (torch.optim.SGD, {"lr": 0.02, "momentum": 0.5})])
    calls = {"n": 0}

    def quad(x: torch.Tensor) -> torch.Tensor:
        return ((x - 1) ** 2).sum()

    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] += 1
        return torch.tensor(bad, dtype=torch.float64) if calls["n"] == 7 else quad(w)

    start = float(quad(w.detach()))
    for step in range(10):
        before = w.detach().clone()
        if step == 3:  # evaluations 7 and 8 are this step's two probes
            with pytest.warns(NonFiniteLossWarning, match=r"GradChain: optimizers\[0\] \(SPSA\)"):
                chain.step(closure)
            assert torch.equal(w.detach(), before) and w.grad is None
            momentum = chain.stages[1].state[w]["momentum_buffer"]
            assert bool(torch.isfinite(momentum).all())
        else:
            chain.step(closure)
        assert bool(torch.isfinite(w).all())
    assert float(quad(w.detach())) < 0.8 * start


def test_a_non_finite_first_stage_loss_stops_the_chain() -> None:
    import warnings

    w = torch.ones(2, dtype=torch.float64, requires_grad=True)
    chain = GradChain([w], [(torch.optim.SGD, {"lr": 1.0}), (torch.optim.Adam, {"lr": 0.1})])

    def closure() -> torch.Tensor:
        chain.zero_grad()
        loss = (w**2).sum() * float("nan")
        loss.backward()
        return loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chain.step(closure)
    assert any("optimizers[0] (SGD)" in str(c.message) for c in caught)
    assert torch.equal(w.detach(), torch.ones(2, dtype=torch.float64)) and w.grad is None
    assert chain.stages[1].state == {}  # Adam never stepped
