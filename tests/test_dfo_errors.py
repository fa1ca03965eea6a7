"""Bad input to the derivative-free optimizers gets a clear error naming the parameter."""

from __future__ import annotations

import math

import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.errors import ClosureError


def w():
    return [torch.zeros(3, requires_grad=True)]


CONSTRUCTION = [
    # (call, exception, message pattern)
    (
        lambda: tzb.RandomWalk(w(), lr=0.0),
        ValueError,
        r"RandomWalk: lr \(param_groups\[0\]\) expected a finite number > 0, got 0.0",
    ),
    (lambda: tzb.RandomWalk(w(), lr=-1.0), ValueError, r"RandomWalk: lr \(param_groups\[0\]\) expected"),
    (lambda: tzb.RandomWalk(w(), lr="big"), ValueError, r"lr .*'big'"),
    (lambda: tzb.RandomWalk(w(), lr=math.nan), ValueError, r"RandomWalk: lr .* got nan"),
    (lambda: tzb.RandomWalk(w(), order=0), ValueError, r"RandomWalk: order expected an int >= 1, got 0"),
    (lambda: tzb.RandomWalk(w(), order=1.5), ValueError, r"RandomWalk: order expected an int >= 1, got 1.5"),
    (
        lambda: tzb.RandomWalk(w(), on_reject="retry"),
        ValueError,
        r"RandomWalk: on_reject expected one of \(\'opposite\', \'undo\'\)",
    ),
    (lambda: tzb.RandomWalk(w(), adapt=0.9), ValueError, r"RandomWalk: adapt expected a finite number > 1"),
    (
        lambda: tzb.RandomWalk(w(), target_rate=1.0),
        ValueError,
        r"RandomWalk: target_rate expected a finite number in \(0, 1\)",
    ),
    (
        lambda: tzb.SecondOrderRandomWalk(w(), turn=0.0),
        ValueError,
        r"SecondOrderRandomWalk: turn expected a finite number > 0",
    ),
    (
        lambda: tzb.RandomSearch(w(), sampler="sobol"),
        ValueError,
        r"RandomSearch: sampler expected one of \('auto', 'uniform', 'normal'\)",
    ),
    (lambda: tzb.RandomSearch(w(), sampler="uniform"), ValueError, r"sampler='uniform' needs finite bounds.*\[0\]"),
    (lambda: tzb.RandomSearch(w(), n_samples=0), ValueError, r"RandomSearch: n_samples expected an int >= 1"),
    (
        lambda: tzb.RandomSearch(w(), std=-1.0),
        ValueError,
        r"RandomSearch: std \(param_groups\[0\]\) expected a finite number > 0",
    ),
    (lambda: tzb.ShrinkingRandomSearch(w(), lr=-0.1), ValueError, r"ShrinkingRandomSearch: lr \(param"),
    (
        lambda: tzb.ShrinkingRandomSearch(w(), nsteps=0),
        ValueError,
        r"ShrinkingRandomSearch: nsteps expected an int >= 1",
    ),
    (
        lambda: tzb.ShrinkingRandomSearch(w(), final_scale=2.0),
        ValueError,
        r"ShrinkingRandomSearch: final_scale expected a finite number in \(0, 1\]",
    ),
    (
        lambda: tzb.GridSearch(w(), step=0.1),
        ValueError,
        r"bounds \(param_groups\[0\]\): GridSearch needs finite bounds",
    ),
    (
        lambda: tzb.GridSearch(w(), bounds=(0, 1)),
        ValueError,
        r"step \(param_groups\[0\]\): GridSearch needs a grid spacing",
    ),
    (
        lambda: tzb.GridSearch(w(), bounds=(0, 1), step=-0.1),
        ValueError,
        r"GridSearch: step \(param_groups\[0\]\) expected a finite number > 0",
    ),
    (
        lambda: tzb.GridSearch(w(), bounds=(0, None), step=0.1),
        ValueError,
        r"bounds: GridSearch needs finite .*\[0\] has none",
    ),
    (lambda: tzb.GridSearch(w(), bounds=(0, 1), step=1e-3), ValueError, r"max_points=10000000"),
    (
        lambda: tzb.GridSearch(w(), bounds=(0, 1), step=0.1, refine=1),
        ValueError,
        r"GridSearch: refine expected an int >= 2",
    ),
    (
        lambda: tzb.GridSearch(w(), bounds=(0, 1), step=0.1, batch_size=0),
        ValueError,
        r"GridSearch: batch_size expected an int >= 1",
    ),
    (lambda: tzb.SequentialSearch(w(), lr=0), ValueError, r"SequentialSearch: lr \(param_groups\[0\]\)"),
    (lambda: tzb.SequentialSearch(w(), points=0), ValueError, r"SequentialSearch: points expected an int >= 1"),
    (
        lambda: tzb.SequentialSearch(w(), shrink=1.0),
        ValueError,
        r"SequentialSearch: shrink expected a finite number in \(0, 1\)",
    ),
    (lambda: tzb.SequentialSearch(w(), grow=0.5), ValueError, r"SequentialSearch: grow expected a finite number >= 1"),
    (
        lambda: tzb.SimulatedAnnealing(w(), init_temp=0.0),
        ValueError,
        r"SimulatedAnnealing: init_temp expected a finite number > 0",
    ),
    (
        lambda: tzb.SimulatedAnnealing(w(), cooling=1.5),
        ValueError,
        r"SimulatedAnnealing: cooling expected a factor in \(0, 1\]",
    ),
    (
        lambda: tzb.SimulatedAnnealing(w(), cooling=0.0),
        ValueError,
        r"SimulatedAnnealing: cooling expected a finite number > 0",
    ),
    (
        lambda: tzb.SimulatedAnnealing(w(), min_temp=-1.0),
        ValueError,
        r"SimulatedAnnealing: min_temp expected a finite number >= 0",
    ),
    (
        lambda: tzb.SimulatedAnnealing(w(), temp_power=-1.0),
        ValueError,
        r"SimulatedAnnealing: temp_power expected a finite number >= 0",
    ),
    (lambda: tzb.ParticleSwarm(w(), n_particles=1), ValueError, r"ParticleSwarm: n_particles expected an int >= 2"),
    (lambda: tzb.ParticleSwarm(w(), inertia=-0.1), ValueError, r"ParticleSwarm: inertia expected a finite number >= 0"),
    (lambda: tzb.ParticleSwarm(w(), init_std=0.0), ValueError, r"ParticleSwarm: init_std expected a finite number > 0"),
    (
        lambda: tzb.ParticleSwarm(w(), max_velocity=0.0),
        ValueError,
        r"ParticleSwarm: max_velocity expected a finite number > 0",
    ),
    (
        lambda: tzb.EvolutionStrategy(w(), n_parents=5, n_offspring=4),
        ValueError,
        r"EvolutionStrategy: n_offspring expected at least n_parents=5",
    ),
    (
        lambda: tzb.EvolutionStrategy(w(), recombination="one-point"),
        ValueError,
        r"EvolutionStrategy: recombination expected one of",
    ),
    (lambda: tzb.EvolutionStrategy(w(), plus="yes"), TypeError, r"EvolutionStrategy: plus expected True or False"),
    (lambda: tzb.EvolutionStrategy(w(), tau=0.0), ValueError, r"EvolutionStrategy: tau expected a finite number > 0"),
    (lambda: tzb.EvolutionStrategy(w(), lr=0.0), ValueError, r"EvolutionStrategy: lr \(param_groups\[0\]\)"),
    (
        lambda: tzb.SwarmOfOptimizers(w(), None),
        TypeError,
        r"SwarmOfOptimizers: optimizers_factory expected an optimizer",
    ),
    (
        lambda: tzb.SwarmOfOptimizers(w(), "adam"),
        TypeError,
        r"SwarmOfOptimizers: optimizers_factory expected an optimizer",
    ),
    (
        lambda: tzb.SwarmOfOptimizers(w(), lambda q: torch.optim.SGD(q, lr=0.1), n=1),
        ValueError,
        r"SwarmOfOptimizers: n expected an int >= 2",
    ),
    (
        lambda: tzb.SwarmOfOptimizers(w(), lambda q: torch.optim.SGD(q, lr=0.1), gravity=1.5),
        ValueError,
        r"SwarmOfOptimizers: gravity expected a finite number in \[0, 1\]",
    ),
    (
        lambda: tzb.SwarmOfOptimizers(w(), lambda q: torch.optim.SGD(q, lr=0.1), patience=0),
        ValueError,
        r"SwarmOfOptimizers: patience expected an int >= 1",
    ),
    (lambda: tzb.RandomWalk(w(), seed="abc"), TypeError, r"seed: expected an int or None"),
    (
        lambda: tzb.RandomWalk(w(), seed=1, generator=torch.Generator()),
        ValueError,
        r"RandomWalk: seed, generator: give one",
    ),
    (lambda: tzb.RandomWalk(w(), generator=1), TypeError, r"RandomWalk: generator expected a torch.Generator"),
    (lambda: tzb.RandomWalk(torch.zeros(3)), TypeError, r"RandomWalk: params expected an iterable"),
    (lambda: tzb.RandomWalk([]), ValueError, r"empty"),
    (lambda: tzb.RandomWalk(w(), bounds=(1.0, 0.0)), ValueError, r"lower bound 1.0 is above upper bound 0.0"),
    (
        lambda: tzb.RandomWalk([torch.zeros(2, dtype=torch.int64)]),
        TypeError,
        r"int64\): RandomWalk optimizes floating-point tensors only; integer and boolean tensors are accepted by "
        r"RandomSearch",
    ),
    (lambda: tzb.ParticleSwarm([torch.zeros(2, dtype=torch.bool)]), TypeError, r"ParticleSwarm optimizes floating"),
    (
        lambda: tzb.RandomSearch([torch.zeros(2, dtype=torch.int64)], bounds=(0.2, 0.8)),
        ValueError,
        r"bounds of .*\[0\] contain no integer value",
    ),
]


@pytest.mark.parametrize("call, exc, pattern", CONSTRUCTION, ids=[f"case{i}" for i in range(len(CONSTRUCTION))])
def test_construction_errors_name_the_parameter(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_bad_option_in_an_added_group_names_the_group():
    opt = tzb.RandomWalk(w(), lr=0.1)
    with pytest.raises(ValueError, match=r"RandomWalk: lr \(param_groups\[1\]\) expected a finite number > 0"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": -1.0})


def test_step_without_closure():
    with pytest.raises(TypeError, match=r"RandomWalk.step\(\) needs a closure"):
        tzb.RandomWalk(w()).step()


def test_closure_returning_a_vector():
    params = w()
    opt = tzb.EvolutionStrategy(params, seed=0)
    with pytest.raises(ClosureError, match="scalar loss"):
        opt.step(lambda: params[0] * 2)


def test_sampler_returning_the_wrong_shape():
    params = w()
    opt = tzb.RandomSearch(params, sampler=lambda p, g: torch.zeros(2), seed=0)
    with pytest.raises(ValueError, match=r"RandomSearch: sampler expected a tensor shaped like .*\(3,\)"):
        opt.step(lambda: float(params[0].detach().sum()))
    assert params[0].tolist() == [0.0, 0.0, 0.0]  # left at the best point (the start)


def test_state_dict_of_another_problem_size():
    small, big = w(), [torch.zeros(5, requires_grad=True)]
    opt = tzb.RandomWalk(small, seed=0)
    opt.step(lambda: float(small[0].detach().sum()))
    other = tzb.RandomWalk(big, seed=0)
    with pytest.raises(ValueError, match="state_dict"):
        other.load_state_dict(opt.state_dict())


IGNORED = [
    (lambda: tzb.RandomWalk(w(), target_rate=0.3), r"target_rate is ignored: it only matters with adapt"),
    (lambda: tzb.SimulatedAnnealing(w(), target_rate=0.3), r"target_rate is ignored"),
    (lambda: tzb.RandomSearch(w(), bounds=(0, 1), std=2.0), r"std is ignored: only the normal sampler"),
    (lambda: tzb.RandomSearch(w(), sampler=lambda p, g: p, std=2.0), r"std is ignored"),
    (lambda: tzb.ParticleSwarm(w(), bounds=(0, 1), init_std=2.0), r"init_std is ignored: every entry has finite"),
]


@pytest.mark.parametrize("call, pattern", IGNORED, ids=[f"case{i}" for i in range(len(IGNORED))])
def test_ignored_options_warn(call, pattern):
    with pytest.warns(tzb.IgnoredOptionWarning, match=pattern) as record:
        call()
    assert record[0].filename == __file__  # the warning points at the caller's line


def test_used_options_do_not_warn():
    tzb.RandomSearch(w(), std=2.0)  # unbounded: the normal sampler uses std
    tzb.ParticleSwarm(w(), bounds=(0, None), init_std=2.0)  # unbounded above: init_std is used
    tzb.RandomWalk(w(), adapt=1.5, target_rate=0.3)
