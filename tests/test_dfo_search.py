"""Random, shrinking, grid and coordinate search: exact visiting order, samplers, integers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from dfo_helpers import Spy, flat_values

import torchzero_bridge as tzb
from torchzero_bridge.testing.functions import Sphere


def _counter_closure():
    """A closure whose loss strictly decreases on every call: every proposal is kept."""
    count = iter(range(10**9))
    return lambda: -float(next(count))


class TestGridSearch:
    def _model(self):
        return Sphere([0.3, -0.4], [1.7], shift=0.25)

    def test_visits_exactly_the_product_grid_in_order(self):
        model = self._model()
        a, b = model.parts
        opt = tzb.GridSearch(
            [{"params": [a], "bounds": (-1.0, 1.0), "step": 0.5}, {"params": [b], "bounds": (0.0, 2.0), "step": 1.0}],
            batch_size=10,
        )
        spy = Spy(model)
        assert opt.grid_size == 5 * 5 * 3
        for _ in range(8):
            opt.step(spy)
        axis_a = [-1.0, -0.5, 0.0, 0.5, 1.0]
        expected = [np.array(p) for p in itertools.product(axis_a, axis_a, [0.0, 1.0, 2.0])]
        visited = spy.xs[1:]  # the first run evaluates the starting point
        assert len(visited) == 75
        assert all(np.array_equal(v, e) for v, e in zip(visited, expected))
        assert np.array_equal(flat_values(model), [0.0, 0.0, 0.0])  # nearest grid point to 0.25

    def test_refines_around_the_best_point(self):
        model = self._model()
        opt = tzb.GridSearch(model.parameters(), bounds=(-1.0, 1.0), step=1.0, batch_size=27, refine=2)
        spy = Spy(model)
        opt.step(spy)  # the whole first grid: {-1, 0, 1}^3
        assert np.array_equal(flat_values(model), [0.0, 0.0, 0.0])
        opt.step(spy)  # first refinement: 0 + {-1, -0.5, 0, 0.5, 1}
        refined = spy.xs[1 + 27 :]
        axis = [-1.0, -0.5, 0.0, 0.5, 1.0]
        expected = [np.array(p) for p in itertools.product(axis, axis, axis)][:27]
        assert all(np.array_equal(v, e) for v, e in zip(refined, expected))
        for _ in range(40):
            opt.step(spy)
        np.testing.assert_allclose(flat_values(model), 0.25, atol=1e-6)

    def test_integer_grid_keeps_integers(self):
        k = torch.zeros(2, dtype=torch.int64)
        flag = torch.zeros(1, dtype=torch.bool)
        seen = []

        def closure():
            seen.append((k.tolist(), bool(flag)))
            return float(((k - torch.tensor([3, -1])) ** 2).sum()) + (0.0 if flag else 1.0)

        opt = tzb.GridSearch(
            [{"params": [k], "bounds": (-4, 4), "step": 1.6}, {"params": [flag], "bounds": (0, 1), "step": 1}]
        )
        for _ in range(opt.grid_size + 2):
            opt.step(closure)
        assert opt.grid_size == 5 * 5 * 2  # step 1.6 rounds to 2 for integers: -4, -2, 0, 2, 4
        assert {v for pair, _ in seen[1:51] for v in pair} == {-4, -2, 0, 2, 4}
        for _ in range(51):  # one refinement: center +- {0, 1, 2}, 5 * 5 * 2 points; then integers are done
            opt.step(closure)
        assert k.tolist() == [3, -1] and bool(flag)
        assert opt.exhausted

    def test_without_refine_it_stops_after_the_grid(self):
        w = torch.zeros(2, dtype=torch.float64)
        opt = tzb.GridSearch([w], bounds=(0.0, 1.0), step=0.5, refine=None, batch_size=4)
        calls = []

        def counting():
            calls.append(1)
            return float(((w - 0.4) ** 2).sum())

        for _ in range(5):
            opt.step(counting)
        assert len(calls) == 1 + 9 and opt.exhausted
        assert w.tolist() == [0.5, 0.5]

    def test_refuses_grids_too_large_to_finish(self):
        w = torch.zeros(30)
        with pytest.raises(ValueError, match=r"GridSearch: the grid has about 1e31 points over 30 entries"):
            tzb.GridSearch([w], bounds=(0.0, 1.0), step=0.1)
        with pytest.raises(ValueError, match=r"a refined grid .* refine=None"):
            tzb.GridSearch([torch.zeros(12)], bounds=(0.0, 1.0), step=1.0)
        assert tzb.GridSearch([torch.zeros(12)], bounds=(0.0, 1.0), step=1.0, refine=None).grid_size == 2**12

    def test_boolean_tensors_get_the_grid_0_1_without_bounds_or_step(self):
        b = torch.zeros(3, dtype=torch.bool)
        opt = tzb.GridSearch([b], batch_size=8)
        assert opt.grid_size == 8
        seen = []

        def closure():
            seen.append(tuple(int(v) for v in b.tolist()))
            return float((b.double() - torch.tensor([1.0, 0.0, 1.0])).abs().sum())

        opt.step(closure)
        assert seen[1:] == list(itertools.product((0, 1), repeat=3))
        assert b.tolist() == [True, False, True] and opt.best_loss == 0.0

    def test_boolean_entries_step_by_one_next_to_other_tensors(self):
        b = torch.zeros(2, dtype=torch.bool)
        k = torch.zeros(1, dtype=torch.int64)
        w = torch.zeros(1, dtype=torch.float64)
        opt = tzb.GridSearch(
            [{"params": [b, k], "bounds": (0, 4), "step": 2}, {"params": [w], "bounds": (0, 1), "step": 0.5}]
        )
        assert opt.grid_size == 2 * 2 * 3 * 3  # b: {0, 1} each, k: {0, 2, 4}, w: {0, 0.5, 1}
        with pytest.raises(ValueError, match=r"bounds \(param_groups\[1\]\): GridSearch needs finite bounds"):
            tzb.GridSearch([{"params": [b]}, {"params": [w], "step": 0.5}])

    def test_converged_after_the_last_grid(self):
        w = torch.zeros(1, dtype=torch.float64)
        opt = tzb.GridSearch([w], bounds=(0.0, 1.0), step=0.5, refine=None, batch_size=3)
        opt.step(lambda: float(w.sum()))
        assert not opt.converged
        with pytest.warns(tzb.errors.ConvergedWarning, match="GridSearch has converged"):
            opt.step(lambda: float(w.sum()))
        assert opt.converged and opt.exhausted


class TestSequentialSearch:
    def test_sweeps_one_coordinate_per_step_and_adapts_spacing(self):
        model = Sphere([1.0, 0.5], [0.0], shift=0.5)
        spy = Spy(model)
        opt = tzb.SequentialSearch(model.parameters(), lr=0.25, points=2)
        opt.step(spy)  # coordinate 0: 1.0 + {-0.5, -0.25, 0.25, 0.5}
        assert [x.tolist() for x in spy.xs[1:]] == [
            [0.5, 0.5, 0.0],
            [0.75, 0.5, 0.0],
            [1.25, 0.5, 0.0],
            [1.5, 0.5, 0.0],
        ]
        assert flat_values(model).tolist() == [0.5, 0.5, 0.0]
        opt.step(spy)  # coordinate 1 is already optimal: no improvement, its spacing halves
        opt.step(spy)  # coordinate 2: 0 + {-0.5, -0.25, 0.25, 0.5}
        assert flat_values(model).tolist() == [0.5, 0.5, 0.5]
        assert opt.method_state["scales"].tolist() == [2.0, 0.5, 2.0]
        before = len(spy.xs)
        opt.step(spy)  # coordinate 0 again, spacing 0.25 * 2 = 0.5
        assert [x[0] for x in spy.xs[before:]] == [-0.5, 0.0, 1.0, 1.5]

    def test_respects_bounds_and_integers(self):
        k = torch.tensor([0, 0])
        opt = tzb.SequentialSearch([k], lr=0.3, bounds=(-2, 5), points=3)
        values = []

        def closure():
            values.append(k.tolist())
            return float(((k - torch.tensor([7, -9])) ** 2).sum())

        for _ in range(20):
            opt.step(closure)
        assert k.tolist() == [5, -2]
        assert all(-2 <= v <= 5 and float(v).is_integer() for pair in values for v in pair)


class TestRandomSearch:
    def test_uniform_sampler_stays_in_bounds_and_keeps_ties(self):
        w = torch.zeros(3, dtype=torch.float64)
        opt = tzb.RandomSearch([w], sampler="uniform", bounds=(-1.0, 2.0), n_samples=5, seed=0)
        g = torch.Generator().manual_seed(0)  # the optimizer's generator for seed=0 on the CPU
        seen = []

        def constant():
            seen.append(w.clone())
            return 1.0

        opt.step(constant)
        expected = -1.0 + 3.0 * torch.rand((5, 3), generator=g, dtype=torch.float64)
        torch.testing.assert_close(torch.stack(seen[1:]), expected)
        torch.testing.assert_close(w, expected[-1])  # equal loss: the newest sample is kept

    def test_normal_sampler_uses_per_group_std(self):
        a, b = torch.zeros(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        opt = tzb.RandomSearch([{"params": [a], "std": 2.0}, {"params": [b], "std": 0.1}], sampler="normal", seed=1)
        opt.step(_counter_closure())
        z = torch.randn((1, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)[0]
        torch.testing.assert_close(torch.cat([a, b]), z * torch.tensor([2.0, 2.0, 0.1], dtype=torch.float64))

    def test_callable_sampler_gets_each_parameter(self):
        a, b = torch.zeros(2, 2), torch.zeros(3)
        shapes = []

        def sampler(p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            shapes.append(tuple(p.shape))
            return torch.full_like(p, float(len(shapes)))

        opt = tzb.RandomSearch([a, b], sampler=sampler, seed=0)
        opt.step(_counter_closure())
        assert shapes == [(2, 2), (3,)]
        assert a.tolist() == [[1.0, 1.0], [1.0, 1.0]] and b.tolist() == [2.0, 2.0, 2.0]

    def test_integer_and_boolean_values_stay_integral(self):
        k = torch.zeros(2, dtype=torch.int32)
        flag = torch.zeros(3, dtype=torch.bool)
        seen = set()

        def closure():
            seen.update(k.tolist())
            return float(((k.double() - 2) ** 2).sum() + (~flag).sum())

        opt = tzb.RandomSearch([{"params": [k], "bounds": (-3, 3)}, {"params": [flag]}], n_samples=20, seed=0)
        for _ in range(20):
            opt.step(closure)
        assert seen == set(range(-3, 4))
        assert k.tolist() == [2, 2] and flag.all()


class TestShrinkingRandomSearch:
    def test_samples_around_best_with_geometric_scale(self):
        w = torch.tensor([0.5, -0.5], dtype=torch.float64)
        opt = tzb.ShrinkingRandomSearch([w], lr=2.0, nsteps=4, final_scale=1e-2, seed=2)
        closure = _counter_closure()
        g = torch.Generator().manual_seed(2)
        expected = w.clone()
        for t in range(6):
            opt.step(closure)
            scale = 1e-2 ** min(t / 4, 1.0)
            expected = expected + 2.0 * scale * torch.randn((1, 2), generator=g, dtype=torch.float64)[0]
            torch.testing.assert_close(w, expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: tzb.SimulatedAnnealing(p, lr=1.0, init_temp=2.0, cooling=0.95, seed=0),
        lambda p: tzb.EvolutionStrategy(p, lr=2.0, n_parents=3, n_offspring=12, seed=0),
        lambda p: tzb.SequentialSearch(p, lr=4.0),
        lambda p: tzb.ShrinkingRandomSearch(p, lr=3.0, nsteps=200, final_scale=0.2, n_samples=4, seed=0),
    ],
    ids=["SimulatedAnnealing", "EvolutionStrategy", "SequentialSearch", "ShrinkingRandomSearch"],
)
def test_integer_problem_solved_exactly(make):
    k = torch.tensor([10, -7, 0], dtype=torch.int64)
    target = torch.tensor([3, -2, 5])
    values = []

    def closure():
        values.append(k.clone())
        return float(((k - target) ** 2).sum())

    opt = make([k])
    for _ in range(300):
        loss = opt.step(closure)
    assert k.dtype == torch.int64 and k.tolist() == [3, -2, 5] and float(loss) == 0.0


class TestConvergence:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_sequential_search_converges_and_the_budget_loop_ends(self, dtype):
        w = torch.tensor([3.0, -2.0], dtype=dtype)
        opt = tzb.SequentialSearch([w], lr=1.0)
        calls = []

        def closure():
            calls.append(1)
            return float(((w - 1.0) ** 2).sum() + (w[0] - w[1]) ** 2 * 0.1)

        budget = 100_000
        with pytest.warns(tzb.errors.ConvergedWarning, match="SequentialSearch has converged") as caught:
            while opt.nfev < budget and not opt.converged:  # the documented loop
                opt.step(closure)
        assert len(caught) == 1 and opt.converged and opt.nfev < 2000
        assert w.tolist() == [1.0, 1.0]
        ran = len(calls)
        for _ in range(5):
            assert float(opt.step(closure)) == 0.0
        assert len(calls) == ran  # nothing more to evaluate
        with torch.no_grad():
            w.fill_(2.0)  # moved from outside: the search starts afresh there
        opt.step(closure)
        assert not opt.converged and len(calls) > ran + 1

    def test_integer_sequential_search_converges_at_a_lattice_minimum(self):
        k = torch.tensor([10, -7], dtype=torch.int64)
        opt = tzb.SequentialSearch([k], lr=4.0)
        with pytest.warns(tzb.errors.ConvergedWarning):
            while opt.nfev < 10_000 and not opt.converged:
                opt.step(lambda: float(((k - torch.tensor([3, -2])) ** 2).sum()))
        assert k.tolist() == [3, -2] and opt.nfev < 200
