"""RandomizedFDM, SPSA, RDSA, GaussianSmoothing, MeZO: unbiasedness, counts, MeZO == SPSA (memory: test_mezo_memory)."""

from __future__ import annotations

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.zeroth_order import (
    DISTRIBUTIONS,
    FORMULAS,
    RDSA,
    SPSA,
    GaussianSmoothing,
    MeZO,
    RandomizedFDM,
)

torch.manual_seed(0)
N = 5
_A = torch.randn(N, N, dtype=torch.float64)
A = _A @ _A.T / N + torch.eye(N, dtype=torch.float64)
B = torch.randn(N, dtype=torch.float64)
X0 = torch.tensor([0.5, -1.0, 2.0, 0.3, -0.7], dtype=torch.float64)
TRUE_GRAD = A @ X0 + B  # gradient of 0.5 x'Ax + b'x


def quadratic_closure(w: torch.Tensor, calls: dict | None = None):
    def closure(backward: bool = True) -> torch.Tensor:
        if calls is not None:
            calls["n"] = calls.get("n", 0) + 1
        loss = 0.5 * w @ A @ w + B @ w
        if backward:
            loss.backward()
        return loss

    return closure


def mean_estimate(make, seeds: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of one estimate per seed and its standard error (coordinate-wise)."""
    ests = []
    for seed in range(seeds):
        w = X0.clone().requires_grad_(True)
        make([w], seed).step(quadratic_closure(w))
        ests.append(w.grad.clone())
    e = torch.stack(ests)
    return e.mean(0), e.std(0) / seeds**0.5


def assert_unbiased(mean: torch.Tensor, stderr: torch.Tensor, precision: float = 0.06) -> None:
    # stated tolerance: every coordinate within 5 standard errors of the autograd gradient,
    # and the run precise enough for that to mean something (standard error < 6% of |g|)
    assert float(stderr.max()) < precision * float(TRUE_GRAD.norm())
    assert torch.all((mean - TRUE_GRAD).abs() <= 5 * stderr + 1e-9), (mean, TRUE_GRAD, stderr)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("formula", ["central3", "forward2"])
def test_randomized_fdm_unbiased_for_every_distribution(distribution: str, formula: str) -> None:
    mean, se = mean_estimate(
        lambda p, s: RandomizedFDM(p, h=1e-2, n_samples=10, formula=formula, distribution=distribution, seed=s)
    )
    assert_unbiased(mean, se)


@pytest.mark.parametrize(
    "make",
    [
        lambda p, s: SPSA(p, h=1e-3, n_samples=10, seed=s),
        lambda p, s: RDSA(p, h=1e-3, n_samples=10, seed=s),
        lambda p, s: GaussianSmoothing(p, n_samples=10, h=1e-2, seed=s),
        lambda p, s: MeZO(p, h=1e-3, n_samples=10, seed=s, fill_grad=True),
    ],
    ids=["SPSA", "RDSA", "GaussianSmoothing", "MeZO"],
)
def test_presets_unbiased(make) -> None:
    mean, se = mean_estimate(make)
    assert_unbiased(mean, se)


def test_per_group_h_stays_unbiased() -> None:
    def make(_, s):
        a, b = X0[:2].clone().requires_grad_(True), X0[2:].clone().requires_grad_(True)
        return a, b, SPSA([{"params": [a], "h": 2e-3}, {"params": [b], "h": 1e-3}], n_samples=10, seed=s)

    ests = []
    for seed in range(200):
        a, b, est = make(None, seed)
        est.step(quadratic_closure_parts(a, b))
        ests.append(torch.cat([a.grad, b.grad]))
    e = torch.stack(ests)
    # unequal steps raise the variance (group b's estimate carries h_a/h_b times a's noise)
    assert_unbiased(e.mean(0), e.std(0) / 200**0.5, precision=0.12)


def quadratic_closure_parts(a: torch.Tensor, b: torch.Tensor):
    def closure(backward: bool = True) -> torch.Tensor:
        w = torch.cat([a, b])
        return 0.5 * w @ A @ w + B @ w

    return closure


@pytest.mark.parametrize("formula", list(FORMULAS))
def test_evaluation_counts(formula: str) -> None:
    expected = {"forward2": 7, "backward2": 7, "central3": 12, "forward3": 13, "backward3": 13, "central5": 24}
    for cls in (RandomizedFDM, MeZO):
        w = X0.clone().requires_grad_(True)
        calls: dict = {}
        est = cls([w], n_samples=6, formula=formula, seed=0)
        loss = est.step(quadratic_closure(w, calls))
        assert calls["n"] == expected[formula] == est.nfev
        f0 = float(0.5 * X0 @ A @ X0 + B @ X0)
        if FORMULAS[formula].uses_center:
            assert loss.item() == f0
        else:
            assert abs(loss.item() - f0) < 1e-4


def test_spsa_single_sample_is_the_textbook_formula() -> None:
    w = X0.clone().requires_grad_(True)
    points = []

    def closure(backward: bool = True) -> torch.Tensor:
        points.append(w.detach().clone())
        return 0.5 * w @ A @ w + B @ w

    loss = SPSA([w], h=1e-3, seed=3).step(closure)
    plus, minus = points[1], points[0]  # x - h d first, then x + h d
    d = (plus - X0) / 1e-3
    assert torch.allclose(d.abs(), torch.ones(N, dtype=torch.float64))
    f = lambda x: float(0.5 * x @ A @ x + B @ x)  # noqa: E731
    expected = (f(plus) - f(minus)) / (2e-3) * d
    assert torch.allclose(w.grad, expected, rtol=1e-10)
    assert loss.item() == pytest.approx((f(plus) + f(minus)) / 2, rel=1e-14)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("formula", ["central3", "forward3"])
def test_mezo_equals_stored_direction_estimate(distribution: str, formula: str) -> None:
    model_a, model_b = _model(), _model()
    model_b.load_state_dict(model_a.state_dict())
    ref = RandomizedFDM(model_a.parameters(), h=1e-3, n_samples=3, formula=formula, distribution=distribution, seed=7)
    mezo = MeZO(
        model_b.parameters(), h=1e-3, n_samples=3, formula=formula, distribution=distribution, seed=7, fill_grad=True
    )
    start = [p.detach().clone() for p in model_b.parameters()]
    la = ref.step(_closure(model_a))
    lb = mezo.step(_closure(model_b))
    assert la.item() == lb.item()
    for pa, pb, x in zip(model_a.parameters(), model_b.parameters(), start):
        assert torch.equal(pa.grad, pb.grad)
        assert torch.equal(pa, x) and torch.equal(pb, x)  # both come back bit for bit


def test_mezo_equals_spsa_with_same_seed_over_steps() -> None:
    model_a, model_b = _model(), _model()
    model_b.load_state_dict(model_a.state_dict())
    adam = lambda p: torch.optim.Adam(p, lr=1e-2)  # noqa: E731
    spsa = SPSA(model_a.parameters(), h=1e-3, seed=11, opt=adam)
    mezo = MeZO(model_b.parameters(), h=1e-3, seed=11, opt=adam)
    for _ in range(10):
        spsa.step(_closure(model_a))
        mezo.step(_closure(model_b))
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-9)


def test_seed_reproducibility_and_generator() -> None:
    def run(**kw) -> torch.Tensor:
        w = X0.clone().requires_grad_(True)
        opt = RDSA([w], opt=lambda p: torch.optim.SGD(p, lr=0.05), **kw)
        for _ in range(5):
            opt.step(quadratic_closure(w))
        return w.detach().clone()

    assert torch.equal(run(seed=1), run(seed=1))
    assert not torch.equal(run(seed=1), run(seed=2))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(run(generator=g1), run(generator=g2))
    torch.manual_seed(9)
    a = run()
    torch.manual_seed(9)
    assert torch.equal(a, run())


@pytest.mark.parametrize("cls", [SPSA, MeZO, GaussianSmoothing])
def test_state_dict_round_trip_resumes_identically(cls) -> None:
    def make(w):
        return cls([w], seed=4, opt=lambda p: torch.optim.Adam(p, lr=1e-2))

    w = X0.clone().requires_grad_(True)
    opt = make(w)
    for _ in range(3):
        opt.step(quadratic_closure(w))
    saved_w, saved = w.detach().clone(), opt.state_dict()
    for _ in range(4):
        opt.step(quadratic_closure(w))
    expected = w.detach().clone()

    w2 = saved_w.clone().requires_grad_(True)
    opt2 = make(w2)
    opt2.load_state_dict(saved)
    assert opt2.nfev == opt.nfev - 4 * (opt.nfev // 7)
    for _ in range(4):
        opt2.step(quadratic_closure(w2))
    assert torch.equal(w2.detach(), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_parameters(dtype: torch.dtype) -> None:
    w = torch.zeros(4, dtype=dtype, requires_grad=True)
    opt = SPSA([w], h=1e-2, seed=0, opt=lambda p: torch.optim.SGD(p, lr=0.05))
    for _ in range(200):
        loss = opt.step(lambda backward=True: ((w.float() - 1) ** 2).sum())
    assert w.dtype == dtype and w.grad.dtype == dtype
    assert loss.item() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_parameters_match_their_own_rerun() -> None:
    w = torch.zeros(6, device="cuda", requires_grad=True)
    outs = []
    for _ in range(2):
        with torch.no_grad():
            w.zero_()
        opt = MeZO([w], distribution="gaussian", seed=0, opt=lambda p: torch.optim.Adam(p, lr=0.05))
        for _ in range(50):
            opt.step(lambda backward=True: ((w - 1) ** 2).sum())
        outs.append(w.detach().clone())
    assert torch.equal(outs[0], outs[1]) and outs[0].device.type == "cuda"


def test_errors_list_valid_choices() -> None:
    with pytest.raises(ValueError, match=r"distribution expected one of \('rademacher', 'gaussian'"):
        RandomizedFDM(distribution="normal")
    with pytest.raises(ValueError, match=r"formula expected one of .*'forward2'"):
        SPSA(formula="fwd")
    with pytest.raises(ValueError, match="n_samples expected an int >= 1"):
        GaussianSmoothing(n_samples=0)
    with pytest.raises(ValueError, match="h expected a finite number > 0"):
        MeZO(h=float("nan"))
    with pytest.raises(TypeError, match="seed"):
        SPSA(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"generator expected a torch\.Generator"):
        SPSA(generator=3)  # type: ignore[arg-type]
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="needs a closure"):
        SPSA([w]).step()


def test_inner_optimizer_gets_extra_group_keys_and_new_groups() -> None:
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = SPSA([{"params": [a], "lr": 0.5, "h": 1e-2}], opt=lambda p: torch.optim.SGD(p, lr=0.1))
    assert opt.opt is not None and opt.opt.param_groups[0]["lr"] == 0.5
    assert "h" not in opt.opt.param_groups[0]
    opt.add_param_group({"params": [b]})
    assert opt.opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["h"] == 1e-3
    assert isinstance(opt, tzb.GradientEstimator)


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()


_X = torch.randn(16, 3, dtype=torch.float64)
_Y = torch.randn(16, 1, dtype=torch.float64)


def _closure(model: torch.nn.Module):
    def closure(backward: bool = True) -> torch.Tensor:
        loss = ((model(_X) - _Y) ** 2).mean()
        if backward:
            model.zero_grad()
            loss.backward()
        return loss

    return closure
