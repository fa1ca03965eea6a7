"""Bad input gets a clear error at construction, and the parameters are left exactly as they were.

One table runs over the optimizers: each row builds an optimizer from fresh tensors with one
bad option (out of range, wrong type, overlapping tensors, an unknown param-group key, bad
bounds) and names the exception and a pattern its message must match (naming the option or
the tensors). After each error every tensor is compared bit for bit with its value before.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.core.param_checks import check_no_overlap, clamp_to_group_bounds
from torchzero_bridge.errors import ClosureError, IgnoredOptionWarning
from torchzero_bridge.scipy.option_checks import OPTION_RULES

Params = dict[str, torch.Tensor]


def fresh() -> Params:
    """The tensors every row may use: two model-like leaves and a plain tensor to take views of."""
    gen = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(3, dtype=torch.float64, generator=gen).requires_grad_(),
        "v": torch.randn(2, dtype=torch.float32, generator=gen).requires_grad_(),
        "plain": torch.randn(4, dtype=torch.float64, generator=gen),
    }


def box(*tensors: torch.Tensor) -> list[dict[str, Any]]:
    return [{"params": list(tensors), "bounds": (-2.0, 2.0)}]


def sgd(p: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(p, lr=0.1)


Row = tuple[str, Callable[[Params], Any], type[BaseException], str]

OPTIONS: list[Row] = [
    # item 10: scipy options out of range or of the wrong type, named in the message
    ("da-maxiter-0", lambda P: tzb.DualAnnealingWrapper(box(P["w"]), maxiter=0), ValueError, r"\['maxiter'\].*>= 1"),
    (
        "da-maxiter-neg",
        lambda P: tzb.DualAnnealingWrapper(box(P["w"]), da_kwargs={"maxiter": -3}),
        ValueError,
        r"maxiter.*-3",
    ),
    ("da-maxfun-0", lambda P: tzb.DualAnnealingWrapper(box(P["w"]), maxfun=0), ValueError, r"maxfun'\] expected"),
    ("da-initial-temp", lambda P: tzb.DualAnnealingWrapper(box(P["w"]), initial_temp=0.0), ValueError, "initial_temp"),
    ("da-visit", lambda P: tzb.DualAnnealingWrapper(box(P["w"]), visit=1.0), ValueError, r"visit'\].*\(1, 3\]"),
    ("da-seed-neg", lambda P: tzb.DualAnnealingWrapper(box(P["w"]), seed=-1), ValueError, r"\['seed'\].*>= 0"),
    ("de-popsize-0", lambda P: tzb.DifferentialEvolutionWrapper(box(P["w"]), popsize=0), ValueError, "popsize"),
    ("de-popsize-neg", lambda P: tzb.DifferentialEvolutionWrapper(box(P["w"]), popsize=-1), ValueError, "popsize"),
    (
        "de-popsize-str",
        lambda P: tzb.DifferentialEvolutionWrapper(box(P["w"]), {"popsize": "5"}),
        ValueError,
        "popsize.*'5'",
    ),
    (
        "de-maxiter-neg",
        lambda P: tzb.DifferentialEvolutionWrapper(box(P["w"]), maxiter=-1),
        ValueError,
        r"maxiter.*>= 0",
    ),
    ("de-tol-neg", lambda P: tzb.DifferentialEvolutionWrapper(box(P["w"]), tol=-1), ValueError, r"de_kwargs\['tol'\]"),
    (
        "de-recomb",
        lambda P: tzb.DifferentialEvolutionWrapper(box(P["w"]), recombination=1.5),
        ValueError,
        "recombination",
    ),
    ("de-rng-neg", lambda P: tzb.DifferentialEvolutionWrapper(box(P["w"]), rng=-4), ValueError, r"\['rng'\]"),
    ("shgo-n-0", lambda P: tzb.SHGOWrapper(box(P["w"]), n=0), ValueError, r"shgo_kwargs\['n'\] expected an int >= 1"),
    ("shgo-iters-neg", lambda P: tzb.SHGOWrapper(box(P["w"]), iters=-1), ValueError, r"\['iters'\]"),
    (
        "shgo-maxfev",
        lambda P: tzb.SHGOWrapper(box(P["w"]), options={"maxfev": 0}),
        ValueError,
        r"\['options'\]\['maxfev'\]",
    ),
    ("direct-maxfun-0", lambda P: tzb.DirectWrapper(box(P["w"]), maxfun=0), ValueError, r"direct_kwargs\['maxfun'\]"),
    (
        "direct-maxfun-float",
        lambda P: tzb.DirectWrapper(box(P["w"]), maxfun=20.0),
        ValueError,
        r"maxfun'\] expected an int",
    ),
    (
        "de-popsize-float",
        lambda P: tzb.DifferentialEvolutionWrapper(box(P["w"]), popsize=5.0),
        ValueError,
        "popsize.*5.0",
    ),
    ("direct-maxiter", lambda P: tzb.DirectWrapper(box(P["w"]), maxiter=-5), ValueError, r"\['maxiter'\]"),
    ("bh-niter-neg", lambda P: tzb.BasinHoppingWrapper([P["w"]], niter=-1), ValueError, r"\['niter'\].*>= 0"),
    ("bh-stepsize-neg", lambda P: tzb.BasinHoppingWrapper([P["w"]], stepsize=-1), ValueError, r"\['stepsize'\].*> 0"),
    ("bh-T-neg", lambda P: tzb.BasinHoppingWrapper([P["w"]], T=-1.0), ValueError, r"\['T'\]"),
    ("bh-interval-0", lambda P: tzb.BasinHoppingWrapper([P["w"]], interval=0), ValueError, r"\['interval'\]"),
    (
        "bh-local-maxiter",
        lambda P: tzb.BasinHoppingWrapper([P["w"]], {"method": "BFGS", "options": {"maxiter": -2}}),
        ValueError,
        r"BasinHoppingWrapper: minimizer_args\['options'\]\['maxiter'\]",
    ),
    (
        "min-tol-neg",
        lambda P: tzb.MinimizeWrapper([P["w"]], method="L-BFGS-B", tol=-1),
        ValueError,
        r"^MinimizeWrapper: tol",
    ),
    (
        "min-lbfgsb-maxiter",
        lambda P: tzb.MinimizeWrapper([P["w"]], {"method": "L-BFGS-B", "options": {"maxiter": -1}}),
        ValueError,
        r"options\['maxiter'\] expected an int >= 0, got -1",
    ),
    (
        "min-lbfgsb-maxfun",
        lambda P: tzb.MinimizeWrapper([P["w"]], method="L-BFGS-B", options={"maxfun": -3}),
        ValueError,
        r"options\['maxfun'\] expected an int >= 1, got -3",
    ),
    (
        "min-bfgs-maxiter-str",
        lambda P: tzb.MinimizeWrapper([P["w"]], method="BFGS", options={"maxiter": "10"}),
        ValueError,
        r"options\['maxiter'\].*'10'",
    ),
    ("min-tol-str", lambda P: tzb.MinimizeWrapper([P["w"]], method="L-BFGS-B", tol="1e-3"), ValueError, r"tol.*'1e-3'"),
    (
        "min-nm-xatol",
        lambda P: tzb.MinimizeWrapper([P["w"]], method="Nelder-Mead", options={"xatol": -1.0}),
        ValueError,
        r"options\['xatol'\]",
    ),
    (
        "min-gtol-nan",
        lambda P: tzb.MinimizeWrapper([P["w"]], method="BFGS", options={"gtol": math.nan}),
        ValueError,
        r"options\['gtol'\].*nan",
    ),
    ("ng-seed-neg", lambda P: tzb.NevergradWrapper([P["w"]], "OnePlusOne", budget=5, seed=-1), ValueError, r"seed.*-1"),
    ("ng-seed-str", lambda P: tzb.NevergradWrapper([P["w"]], "OnePlusOne", budget=5, seed="1"), TypeError, "seed"),
    ("ng-budget-0", lambda P: tzb.NevergradWrapper([P["w"]], "OnePlusOne", budget=0), ValueError, "budget"),
    (
        "optuna-seed-neg",
        lambda P: tzb.OptunaWrapper(box(P["w"]), n_trials=3, seed=-1),
        ValueError,
        r"OptunaWrapper: seed",
    ),
    ("optuna-trials-0", lambda P: tzb.OptunaWrapper(box(P["w"]), n_trials=0), ValueError, "n_trials"),
]

OVERLAP = r"{a}.*and {b}.*share memory"
FIRST = r"param_groups\[0\]\['params'\]\[0\]"
SECOND_IN_0 = r"param_groups\[0\]\['params'\]\[1\]"
SECOND_IN_1 = r"param_groups\[1\]\['params'\]\[0\]"

OVERLAPPING: list[Row] = [
    # item 9: a parameter that is a view of (or overlaps) another is rejected, naming both
    (
        "min-view",
        lambda P: tzb.MinimizeWrapper([P["plain"], P["plain"][1:3]]),
        ValueError,
        OVERLAP.format(a=FIRST, b=SECOND_IN_0),
    ),
    (
        "min-data-alias",
        lambda P: tzb.MinimizeWrapper([P["w"], P["w"].data]),
        ValueError,
        OVERLAP.format(a=FIRST, b=SECOND_IN_0),
    ),
    (
        "de-groups",
        lambda P: tzb.DifferentialEvolutionWrapper(
            [{"params": [P["plain"]], "bounds": (-1, 1)}, {"params": [P["plain"].view(2, 2)], "bounds": (-1, 1)}]
        ),
        ValueError,
        OVERLAP.format(a=FIRST, b=SECOND_IN_1),
    ),
    (
        "named",
        lambda P: tzb.MinimizeWrapper([{"params": [P["plain"], P["plain"][2:]], "param_names": ["weight", "tail"]}]),
        ValueError,
        OVERLAP.format(a="'weight'", b="'tail'"),
    ),
    (
        "ng-view",
        lambda P: tzb.NevergradWrapper([P["plain"], P["plain"][:1]], "OnePlusOne", budget=5),
        ValueError,
        "share memory",
    ),
    (
        "optuna-view",
        lambda P: tzb.OptunaWrapper(box(P["plain"], P["plain"][3:]), n_trials=2),
        ValueError,
        "share memory",
    ),
    (
        "walk-view",
        lambda P: tzb.RandomWalk([P["plain"][:2], P["plain"]]),
        ValueError,
        OVERLAP.format(a=FIRST, b=SECOND_IN_0),
    ),
    ("pso-view", lambda P: tzb.ParticleSwarm(box(P["plain"], P["plain"][1:])), ValueError, "share memory"),
    ("search-view", lambda P: tzb.RandomSearch([P["plain"], P["plain"][::3]]), ValueError, "share memory"),
    (
        "spsa-view",
        lambda P: tzb.SPSA([P["plain"], P["plain"][1:2]], opt=sgd),
        ValueError,
        OVERLAP.format(a=FIRST, b=SECOND_IN_0),
    ),
    (
        "mezo-groups",
        lambda P: tzb.MeZO([{"params": [P["plain"]]}, {"params": [P["plain"][:1]]}]),
        ValueError,
        OVERLAP.format(a=FIRST, b=SECOND_IN_1),
    ),
    ("fdm-view", lambda P: tzb.FDM([P["plain"], P["plain"].view(2, 2)]), ValueError, "share memory"),
    ("randomgrad-view", lambda P: tzb.RandomGrad([P["plain"], P["plain"][2:]], lr=0.1), ValueError, "share memory"),
    (
        "gradchain-view",
        lambda P: tzb.GradChain([P["plain"], P["plain"][1:]], [tzb.SPSA(), sgd]),
        ValueError,
        "share memory",
    ),
]

IGNORED: list[Row] = [
    # item 11: param-group keys the optimizer never reads are not dropped silently. That every registry
    # entry warns about (or refuses) an unknown key is the contract suite's test_unknown_group_option_is_not_dropped;
    # these rows pin particular messages (did-you-mean, group index, the opt=None path).
    (
        "min-group-lr",
        lambda P: tzb.MinimizeWrapper([{"params": [P["w"]], "lr": 0.1}]),
        IgnoredOptionWarning,
        r"MinimizeWrapper: param_groups\[0\] option 'lr'",
    ),
    (
        "ng-group-typo",
        lambda P: tzb.NevergradWrapper([{"params": [P["w"]], "sigmaa": 0.1}], budget=5),
        IgnoredOptionWarning,
        r"'sigmaa'.*did you mean 'sigma'",
    ),
    (
        "walk-lrr",
        lambda P: tzb.RandomWalk([{"params": [P["w"]], "lrr": 0.1}]),
        IgnoredOptionWarning,
        r"RandomWalk: .*'lrr'.*did you mean 'lr'",
    ),
    (
        "bh-second-group",
        lambda P: tzb.BasinHoppingWrapper([{"params": [P["w"]]}, {"params": [P["v"]], "step": 1}]),
        IgnoredOptionWarning,
        r"param_groups\[1\] option 'step'",
    ),
    (
        "spsa-no-opt-lr",
        lambda P: tzb.SPSA([{"params": [P["w"]], "lr": 0.1}]),
        IgnoredOptionWarning,
        r"SPSA: .*\['lr'\]",
    ),
    # estimators with opt=: bounds are validated before an inner optimizer sees them
    (
        "spsa-bounds-reversed",
        lambda P: tzb.SPSA([{"params": [P["w"]], "bounds": (2.0, -2.0)}], opt=sgd),
        ValueError,
        r"SPSA: bounds: lower bound 2.0 is above upper bound -2.0",
    ),
    (
        "mezo-bounds-nan",
        lambda P: tzb.MeZO([{"params": [P["w"]], "bounds": (math.nan, 1.0)}], opt=sgd),
        ValueError,
        r"MeZO: bounds: NaN",
    ),
    (
        "fdm-bounds-shape",
        lambda P: tzb.FDM([{"params": [P["w"]], "bounds": (torch.zeros(2), 1.0)}], opt=sgd),
        ValueError,
        r"FDM: .*\['bounds'\] lo .* does not broadcast",
    ),
    (
        "randomgrad-bounds",
        lambda P: tzb.RandomGrad([{"params": [P["w"]], "bounds": (1.0, 0.0)}], opt=sgd),
        ValueError,
        r"RandomGrad: bounds: lower bound",
    ),
]

AT_STEP: list[tuple[str, Callable[[Params], Any], Callable[[Params], Any], type[BaseException], str]] = [
    # errors that can only show at step: the parameters (and .grad) still end exactly as they were
    (
        "min-vector-loss",
        lambda P: tzb.MinimizeWrapper([P["w"]], method="BFGS"),
        lambda P: lambda backward=True: P["w"] * 2,
        ClosureError,
        "scalar",
    ),
    (
        "walk-vector-loss",
        lambda P: tzb.RandomWalk([P["plain"]], seed=0),
        lambda P: lambda: P["plain"] * 2,
        ClosureError,
        "scalar",
    ),
    ("da-no-closure", lambda P: tzb.DualAnnealingWrapper(box(P["w"]), maxiter=5), lambda P: None, TypeError, "closure"),
]

ROWS = OPTIONS + OVERLAPPING + IGNORED


def _bits(P: Params) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    return {
        k: (t.detach().clone().reshape(-1).view(torch.uint8), None if t.grad is None else t.grad.clone())
        for k, t in P.items()
    }


def _assert_untouched(P: Params, before: dict[str, tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    for k, t in P.items():
        bits, grad = before[k]
        assert torch.equal(t.detach().reshape(-1).view(torch.uint8), bits), f"{k} changed"
        assert (t.grad is None) == (grad is None), f"{k}.grad changed"
        if grad is not None:
            assert t.grad is not None and torch.equal(t.grad, grad)


def test_the_table_is_large_enough() -> None:
    assert len(ROWS) + len(AT_STEP) >= 40
    assert len({r[0] for r in ROWS} | {r[0] for r in AT_STEP}) == len(ROWS) + len(AT_STEP)


@pytest.mark.parametrize(("factory", "exc", "pattern"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_rejected_naming_it_and_leaves_the_parameters(
    factory: Callable[[Params], Any], exc: type[BaseException], pattern: str
) -> None:
    P = fresh()
    before = _bits(P)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IgnoredOptionWarning)
        with pytest.raises(exc, match=pattern) as info:
            factory(P)
    assert type(info.value) is exc or issubclass(type(info.value), exc)
    _assert_untouched(P, before)


@pytest.mark.parametrize(
    ("factory", "closure", "exc", "pattern"), [r[1:] for r in AT_STEP], ids=[r[0] for r in AT_STEP]
)
def test_bad_input_at_step_leaves_the_parameters(
    factory: Callable[[Params], Any], closure: Callable[[Params], Any], exc: type[BaseException], pattern: str
) -> None:
    P = fresh()
    opt = factory(P)
    before = _bits(P)
    with pytest.raises(exc, match=pattern):
        opt.step(closure(P))
    _assert_untouched(P, before)


# ---------------------------------------------------------------------- the options table


def test_every_rule_names_an_option_the_scipy_function_takes() -> None:
    import inspect

    import scipy.optimize as so

    for solver, rules in OPTION_RULES.items():
        if solver in ("minimize", "shgo.options"):
            continue
        params = set(inspect.signature(getattr(so, solver)).parameters)
        assert set(rules) <= params, (solver, set(rules) - params)


@pytest.mark.parametrize(
    ("make", "kwargs"),
    [
        (tzb.DualAnnealingWrapper, {"maxiter": 1, "maxfun": 1e3, "initial_temp": 5e4, "visit": 2.9, "rng": 0}),
        (tzb.DifferentialEvolutionWrapper, {"maxiter": 0, "popsize": np.int64(3), "tol": 0, "recombination": 1.0}),
        (tzb.SHGOWrapper, {"n": 8, "iters": 1, "options": {"maxfev": 50}}),
        (tzb.DirectWrapper, {"maxfun": 20, "maxiter": 3, "eps": 0.0}),
    ],
)
def test_edge_values_scipy_accepts_still_run(make: Any, kwargs: dict[str, Any]) -> None:
    w = torch.zeros(2, dtype=torch.float64)
    opt = make(box(w), **kwargs)
    loss = opt.step(lambda backward=True: ((w - 0.5) ** 2).sum())
    assert math.isfinite(float(loss)) and float(loss) <= 0.5


def test_minimize_accepts_integral_float_counts_like_scipy() -> None:
    w = torch.tensor([3.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="L-BFGS-B", options={"maxiter": 1e4, "maxfun": 2e4}, tol=0)

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = ((w - 1.0) ** 2).sum()
        if backward:
            loss.backward()
        return loss

    opt.step(closure)
    assert opt.result.success and torch.allclose(w, torch.ones(2, dtype=torch.float64))


def test_dual_annealing_rechecks_options_at_step_instead_of_looping() -> None:
    # scipy's dual_annealing with maxiter=0 loops forever without evaluating anything, so no
    # timeout could stop it: an option changed after construction is refused before scipy runs
    w = torch.tensor([0.5, 0.5], dtype=torch.float64)
    opt = tzb.DualAnnealingWrapper(box(w), maxiter=5, rng=0, timeout=5.0)
    opt.solver_kwargs["maxiter"] = 0
    before = w.clone()
    with pytest.raises(ValueError, match=r"da_kwargs\['maxiter'\] expected an int >= 1, got 0"):
        opt.step(lambda: (w**2).sum())
    assert torch.equal(w, before)


# ---------------------------------------------------------------------- overlap check


def test_interleaved_views_share_no_element_and_are_accepted() -> None:
    base = torch.zeros(6)
    check_no_overlap([base[::2], base[1::2]], ["even", "odd"])
    opt = tzb.RandomSearch([base[::2], base[1::2]], seed=0)
    loss = opt.step(lambda: float(((base - 1.0) ** 2).sum()))
    assert opt.nfev >= 2 and float(loss) == float(((base - 1.0) ** 2).sum())


def test_tensors_aliasing_one_numpy_array_are_rejected() -> None:
    arr = np.zeros(4)
    a, b = torch.from_numpy(arr), torch.from_numpy(arr[2:])  # two storages, one memory
    with pytest.raises(ValueError, match="x and y share memory"):
        check_no_overlap([a, b], ["x", "y"])


def test_strided_views_that_cross_are_rejected() -> None:
    m = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="row and col share memory"):
        check_no_overlap([m[1], m[:, 1]], ["row", "col"])  # they meet at m[1, 1]
    check_no_overlap([m[0], m[1:, 1]], ["row0", "col1-below"])
    check_no_overlap([m[:, 0], m[1, 1:]], ["col0", "row1-right"])  # a dense run inside the other's gap


def test_distinct_tensors_and_tensors_on_other_storage_pass() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    opt = tzb.MinimizeWrapper(model.parameters(), method="BFGS")
    assert len(opt.flat_params().params) == 4


# ---------------------------------------------------------------------- estimator bounds


def _spsa_run(bounds: tuple[float, float] | None) -> torch.Tensor:
    w = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    group: dict[str, Any] = {"params": [w]}
    if bounds is not None:
        group["bounds"] = bounds
    opt = tzb.SPSA([group], h=1e-3, seed=3, opt=lambda p: torch.optim.SGD(p, lr=10.0))
    opt.step(lambda backward=True: ((w - torch.tensor([5.0, -5.0, 0.1], dtype=torch.float64)) ** 2).sum())
    return w


def test_estimator_with_opt_projects_the_update_into_the_group_bounds() -> None:
    free = _spsa_run(None)
    assert float(free.abs().max()) > 0.5  # the unbounded step leaves the box
    bounded = _spsa_run((-0.5, 0.5))
    assert torch.equal(bounded, free.clamp(-0.5, 0.5))  # same step, then projected


def test_randomgrad_with_opt_projects_the_update_into_the_group_bounds() -> None:
    def run(bounded: bool) -> torch.Tensor:
        w = torch.zeros(4, dtype=torch.float64)
        group: dict[str, Any] = (
            {"params": [w], "bounds": (torch.full((4,), -0.01, dtype=torch.float64), 0.01)}
            if bounded
            else {"params": [w]}
        )
        opt = tzb.RandomGrad([group], lr=1.0, seed=1, opt=lambda p: torch.optim.SGD(p, lr=1.0))
        opt.step(lambda backward=True: float(((w - 1.0) ** 2).sum()))
        return w

    free, bounded = run(False), run(True)
    assert not torch.equal(free, free.clamp(-0.01, 0.01))
    assert torch.equal(bounded, free.clamp(-0.01, 0.01))


def test_clamp_handles_complex_and_per_tensor_bounds() -> None:
    z = torch.tensor([3 + 4j, -3 - 0.5j], dtype=torch.complex64)
    r = torch.tensor([5.0, -5.0])
    clamp_to_group_bounds([{"params": [z, r], "bounds": ([-1.0, None], [1.0, 0.0])}])
    assert torch.equal(z, torch.tensor([1 + 1j, -1 - 0.5j], dtype=torch.complex64))
    assert torch.equal(r, torch.tensor([0.0, -5.0]))


# ---------------------------------------------------------------------- first-step imports (item 12)

_NO_IMPORT_IN_STEP = textwrap.dedent(
    """
    import sys, warnings
    import torch
    import torchzero_bridge as tzb
    from torchzero_bridge.testing.registry import ENTRIES
    from torchzero_bridge.testing.problems import make_closure

    warnings.simplefilter("ignore")

    class NoImport:  # what a SIGINT during an import would break: any import at all inside step
        active = False
        def find_spec(self, name, path=None, target=None):
            if NoImport.active:
                raise KeyboardInterrupt(f"import of {name} inside step")
            return None

    # torch's own first optimizer step imports a profiler module once; torch sets its "checked"
    # flag before that import, so an interrupt there cannot break later steps. Do it here.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).step()
    sys.meta_path.insert(0, NoImport())
    for e in ENTRIES:  # each entry's first step in this process (several entries share a class)
        model = e.problem()
        opt = e.factory(model.parameters())
        closure = make_closure(model, opt.zero_grad)
        before = set(sys.modules)
        NoImport.active = True
        try:
            opt.step(closure)
        finally:
            NoImport.active = False
        new = sorted(set(sys.modules) - before)
        assert not new, (e.name, new)
        print(e.name, "ok")
    """
)


def test_a_first_step_imports_nothing() -> None:
    from torchzero_bridge.testing.registry import ENTRIES

    pytest.importorskip("nevergrad")
    pytest.importorskip("optuna")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", _NO_IMPORT_IN_STEP], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split().count("ok") == len(ENTRIES)


# ---------------------------------------------------------------------- group keys


def test_a_group_added_later_is_checked_too() -> None:
    w, v = torch.zeros(2), torch.zeros(3)
    opt = tzb.RandomWalk([w], seed=0)
    with pytest.warns(IgnoredOptionWarning, match=r"RandomWalk: param_groups\[1\] option 'lrr'.*did you mean 'lr'"):
        opt.add_param_group({"params": [v], "lrr": 0.5})
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\].*param_groups\[2\]\['params'\]\[0\]"):
        opt.add_param_group({"params": [w[1:]]})


def test_group_keys_that_are_read_elsewhere_give_no_warning() -> None:
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IgnoredOptionWarning)
        swarm = tzb.SwarmOfOptimizers([{"params": [w], "lr": 0.3}], lambda p: torch.optim.SGD(p), n=2, seed=0)
        assert swarm.members[0].param_groups[0]["lr"] == 0.3  # forwarded to each member optimizer
        tzb.MinimizeWrapper([{"params": [w], "h": 1e-2}], method="BFGS", jac=tzb.FDM())  # the estimator reads h
        tzb.NevergradWrapper([{"params": [w], "sigma": 0.5}], "OnePlusOne", budget=5)
        tzb.RandomWalk([{"params": [w], "lr": 0.1, "bounds": (-1, 1)}])


def test_mezo_seed_path_projects_its_sgd_update_into_the_group_bounds() -> None:
    """MeZO with plain SGD applies the update inside its walk (no .grad); the bounds still hold."""

    def run(bounds: tuple[float, float] | None) -> torch.Tensor:
        w = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
        group: dict[str, Any] = {"params": [w]} if bounds is None else {"params": [w], "bounds": bounds}
        opt = tzb.MeZO([group], h=1e-3, seed=3, opt=lambda p: torch.optim.SGD(p, lr=10.0))
        opt.step(lambda backward=True: ((w - torch.tensor([5.0, -5.0, 0.1], dtype=torch.float64)) ** 2).sum())
        assert w.grad is None  # the seed path: no gradient buffer
        return w

    free = run(None)
    assert float(free.abs().max()) > 0.5
    assert torch.equal(run((-0.5, 0.5)), free.clamp(-0.5, 0.5))
