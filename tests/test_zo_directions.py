"""The direction generator: stated distributions, per-tensor streams, seed reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

import torchzero_bridge.zeroth_order.directions as directions
import torchzero_bridge.zeroth_order.estimators.walk as walk_module
from torchzero_bridge.zeroth_order.directions import DISTRIBUTIONS, DirectionSampler, piece_of

N = 400_000


def draw(distribution: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return DirectionSampler(distribution).sample(seed, [torch.empty(N, dtype=dtype)])[0]


def test_rademacher_is_exactly_fair_independent_signs() -> None:
    d = draw("rademacher")
    assert set(d.unique().tolist()) == {-1.0, 1.0}
    se = 1 / math.sqrt(N)
    assert abs(float(d.mean())) < 5 * se
    # every bit position of the expanded bytes is fair, and neighbours are uncorrelated
    lanes = d.view(-1, 8)
    assert float(lanes.mean(0).abs().max()) < 5 * math.sqrt(8) * se
    for lag in (1, 7, 8, 63, 64, 65):
        assert abs(float((d[:-lag] * d[lag:]).mean())) < 5 * se, lag


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_moments(dtype: torch.dtype) -> None:
    d = draw("gaussian", 1, dtype).double()
    se = 1 / math.sqrt(N)
    assert abs(float(d.mean())) < 5 * se
    assert abs(float(d.var()) - 1) < 5 * math.sqrt(2) * se
    assert abs(float((d**3).mean())) < 5 * math.sqrt(15) * se  # skewness 0
    assert abs(float((d**4).mean()) - 3) < 5 * math.sqrt(96) * se  # kurtosis 3
    assert abs(float((d[:-1] * d[1:]).mean())) < 5 * se


def test_uniform_range_and_variance() -> None:
    d = draw("uniform", 2)
    assert float(d.abs().max()) <= math.sqrt(3)
    se = 1 / math.sqrt(N)
    assert abs(float(d.var()) - 1) < 5 * math.sqrt(0.8) * se
    assert abs(float((d**4).mean()) - 1.8) < 5 * math.sqrt(9 - 1.8**2) * se  # E[u^8] = 9


def test_sphere_has_radius_sqrt_n() -> None:
    tensors = [torch.empty(300, dtype=torch.float64), torch.empty(7, 9, dtype=torch.float64)]
    d = DirectionSampler("sphere").sample(4, tensors)
    total = sum(float((x**2).sum()) for x in d)
    assert total == pytest.approx(363, rel=1e-12)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_second_moment_is_identity_across_tensors(distribution: str) -> None:
    # E[d_i d_j] = 0 between different tensors of one sample (distinct streams), E[d_i^2] = 1
    a, b = torch.empty(5), torch.empty(5)
    sampler = DirectionSampler(distribution)
    draws = torch.stack([torch.cat(sampler.sample(s, [a, b])) for s in range(4000)]).double()
    second = draws.T @ draws / len(draws)
    assert torch.allclose(second, torch.eye(10, dtype=torch.float64), atol=5 * math.sqrt(2 / 4000))


def test_same_seed_same_bits_other_seed_other_bits() -> None:
    tensors = [torch.empty(1000), torch.empty(10, 10, dtype=torch.bfloat16), torch.empty(3, dtype=torch.float64)]
    for distribution in DISTRIBUTIONS:
        first = DirectionSampler(distribution).sample(99, tensors)
        again = DirectionSampler(distribution).sample(99, tensors)
        other = DirectionSampler(distribution).sample(100, tensors)
        assert all(torch.equal(x, y) for x, y in zip(first, again))
        assert not torch.equal(first[0], other[0])
        assert [x.dtype for x in first] == [t.dtype for t in tensors]


def test_pinned_rademacher_values() -> None:
    # the documented generator, pinned: a change of generator must be deliberate
    d = DirectionSampler("rademacher").sample(0, [torch.empty(16)])[0]
    words = torch.empty(1, dtype=torch.int64)
    gen = torch.Generator().manual_seed(directions.tensor_seed(0, 0))
    words.random_(-(1 << 63), None, generator=gen)
    bits = [(int(b) >> k) & 1 for b in words.view(torch.uint8)[:2].tolist() for k in range(8)]
    assert d.tolist() == [2.0 * bit - 1 for bit in bits]


def test_one_tensor_regenerates_alone_and_chunks_continue_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directions, "CHUNK", 128)
    monkeypatch.setattr(walk_module, "CHUNK", 128)
    tensors = [torch.empty(1000), torch.empty(20, 30).t(), torch.empty(129)]
    sampler = DirectionSampler("gaussian")
    full = sampler.sample(5, tensors)
    seen: list[tuple[int, slice | None]] = []
    for i, sl, d in sampler.pieces(5, tensors, only=lambda i: i != 0):
        seen.append((i, sl))
        assert torch.equal(piece_of(full[i], sl), d)
    assert [i for i, _ in seen] == [1, 2, 2]  # tensor 0 skipped; the transposed one whole; 129 = 128 + 1
    assert seen[0][1] is None and seen[1][1] == slice(0, 128)
