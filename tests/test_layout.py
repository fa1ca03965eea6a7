"""Layout: offsets, kinds, masks, bounds with the integer rules, start clipping, and its cache."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb
from torchzero_bridge.core.device import FlatSpace
from torchzero_bridge.core.groups import signature
from torchzero_bridge.core.layout import Layout, kind_of


def _mixed() -> list[dict[str, Any]]:
    return [
        {"params": [torch.zeros(2, 2), torch.zeros(1, dtype=torch.complex64)], "sigma": 0.5},
        {"params": [torch.zeros(3, dtype=torch.int8), torch.zeros(2, dtype=torch.bool)], "bounds": (-200.0, 0.7)},
    ]


def test_offsets_kinds_masks_and_group_slices_by_hand() -> None:
    layout = Layout(_mixed(), allow_integer=True)
    assert layout.n == 4 + 2 + 3 + 2
    assert layout.offsets == [0, 4, 6, 9, 11]
    assert layout.kinds == ["float", "float", "int", "bool"]
    assert layout.kind_codes.tolist() == [0] * 6 + [1] * 3 + [2] * 2
    assert layout.integer_mask.tolist() == [False] * 6 + [True] * 5
    assert layout.bool_mask.tolist() == [False] * 9 + [True] * 2
    assert layout.float_mask.tolist() == [True] * 6 + [False] * 5
    assert layout.group_slices == [(0, 6), (6, 11)]
    with pytest.raises(ValueError):
        layout.integer_mask[0] = True  # shared by every caller, so read-only
    values, given = layout.group_values("sigma")
    assert values.tolist() == [0.5] * 6 + [1.0] * 5
    assert given.tolist() == [True] * 6 + [False] * 5


def test_kind_rule_covers_every_integer_dtype() -> None:
    assert [kind_of(d) for d in (torch.float16, torch.complex128, torch.bool)] == ["float", "float", "bool"]
    assert {kind_of(d) for d in (torch.uint8, torch.int64, torch.uint16, torch.uint32, torch.uint64)} == {"int"}
    with pytest.raises(TypeError, match=r"integer dtype torch\.uint16"):
        tzb.FlatParams([torch.zeros(2, dtype=torch.uint16)])


def test_integral_box_applies_the_dtype_range_the_bool_range_and_integral_ends() -> None:
    layout = Layout(_mixed(), allow_integer=True)
    assert layout.bounds() is not None
    lo, hi = layout.integral_box()
    # floats unbounded; int8 within [-128, 127] and integral; bool within [0, 1]
    assert lo.tolist() == [-np.inf] * 6 + [-128.0] * 3 + [0.0] * 2
    assert hi.tolist() == [np.inf] * 6 + [0.0] * 3 + [0.0] * 2
    raw = layout.bounds()
    assert raw is not None and raw[0][6] == -200.0  # the user's bounds themselves are unchanged
    empty = Layout([{"params": [torch.zeros(1, dtype=torch.int64)], "bounds": (0.2, 0.8)}], allow_integer=True)
    with pytest.raises(ValueError, match=r"bounds of .*\[0\] contain no integer value"):
        empty.integral_box()


def test_require_box_fills_booleans_and_names_the_unbounded_entry() -> None:
    layout = Layout([torch.zeros(1), torch.zeros(2, dtype=torch.bool)], allow_integer=True)
    with pytest.raises(ValueError, match=r"DE needs finite bounds for every entry; param_groups\[0\]\['params'\]\[0\]"):
        layout.require_box(None, "DE", bool_default=True)
    lo, hi = layout.require_box([(-1, 1), (None, None), (0, 0)], "DE", bool_default=True)
    assert lo.tolist() == [-1.0, 0.0, 0.0] and hi.tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="SHGO needs bounds"):
        layout.require_box(None, "SHGO", finite=False)


def test_flat_box_prefixes_the_option_name() -> None:
    layout = Layout([torch.zeros(2)])
    with pytest.raises(ValueError, match=r"minimizer_args\['bounds'\]: lower bound 1.0 is above"):
        layout.flat_box([(1, 0), (0, 1)], "minimizer_args['bounds']")


def test_clip_start_warns_once_names_the_first_entry_and_keeps_x0_when_inside() -> None:
    layout = Layout([torch.zeros(3)])
    lo, hi = np.zeros(3), np.ones(3)
    inside = np.array([0.0, 0.5, 1.0])
    assert layout.clip_start(inside, lo, hi) is inside
    with pytest.warns(UserWarning, match=r"outside the bounds at 2 entries \(first: .*\[1\]\); then so"):
        out = layout.clip_start(np.array([0.5, -1.0, 3.0]), lo, hi, then="then so")
    assert out.tolist() == [0.5, 0.0, 1.0]


def test_round_integers_matches_what_the_parameters_hold() -> None:
    k = torch.zeros(3, dtype=torch.int32)
    b = torch.zeros(2, dtype=torch.bool)
    flat = tzb.FlatParams([k, b], allow_integer=True)
    x = np.array([1.5, 2.5, -0.6, 0.49, 0.5])
    flat.write(x)
    assert flat.layout.round_integers(x).tolist() == flat.read().tolist() == [2.0, 2.0, -1.0, 0.0, 1.0]


def test_host_and_device_vectors_share_one_layout_rule() -> None:
    k = torch.zeros(2, dtype=torch.int16)
    b = torch.zeros(1, dtype=torch.bool)
    w = torch.zeros(1)
    groups = [{"params": [w, k, b], "bounds": (-0.5, 9.5)}]
    space = FlatSpace(groups, allow_integer=True, owner="test")
    host = tzb.FlatParams(groups, allow_integer=True).layout
    assert space.lo.tolist() == host.integral_box()[0].tolist() == [-0.5, 0.0, 0.0, 0.0]
    assert space.hi.tolist() == host.integral_box()[1].tolist() == [9.5, 9.0, 9.0, 1.0]
    assert space.boolean.tolist() == host.bool_mask.tolist()


def test_signature_sees_dtype_changes_rebinding_and_new_options() -> None:
    model = torch.nn.Linear(2, 1)
    groups = [{"params": list(model.parameters()), "bounds": None}]
    key = signature(groups)
    assert signature(groups) == key
    model.double()
    assert signature(groups) != key
    key = signature(groups)
    model.weight.data = torch.zeros(1, 2, dtype=torch.float64)
    assert signature(groups) != key
    key = signature(groups)
    groups[0]["bounds"] = (-1.0, 1.0)
    assert signature(groups) != key
    assert signature(groups, ("param_names",)) == signature([{**groups[0], "bounds": None}], ("param_names",))


def _quadratic(w: torch.Tensor, target: float) -> Callable[[bool], torch.Tensor]:
    def closure(backward: bool = True) -> torch.Tensor:
        loss = ((w - target) ** 2).sum()
        if backward:
            w.grad = None
            loss.backward()
        return loss

    return closure


def test_optimizer_reuses_its_host_vector_and_rebuilds_it_after_rebinding() -> None:
    w = torch.zeros(3, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], {"method": "L-BFGS-B"})
    first = opt.flat_params()
    assert opt.flat_params() is first  # built once
    opt.step(_quadratic(w, 1.0))
    assert opt.flat_params() is first
    np.testing.assert_allclose(w.detach().numpy(), 1.0, atol=1e-6)
    w.data = torch.zeros(3, dtype=torch.float64)  # new storage and dtype behind the same tensor
    opt.step(_quadratic(w, 2.0))
    assert opt.flat_params() is not first
    assert w.dtype == torch.float64
    np.testing.assert_allclose(w.detach().numpy(), 2.0, atol=1e-6)


def test_silent_writes_leave_version_counters_and_answer_writes_bump_them() -> None:
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    flat = tzb.FlatParams([w])
    before = w._version
    flat.write(np.ones(3), silent=True)
    assert w._version == before and w.tolist() == [1.0, 1.0, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat.write(np.full(3, 2.0))
    assert w._version > before and w.tolist() == [2.0, 2.0, 2.0]
