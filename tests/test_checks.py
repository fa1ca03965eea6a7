"""The shared option checks: every range form, accepted scalar types, and exact messages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from torchzero_bridge._checks import check_int, check_positive, check_real, check_seed

ACCEPTED = [
    # (kwargs, value, expected float)
    ({}, 1e-3, 1e-3),
    ({}, np.float32(0.5), 0.5),
    ({}, np.array(2.0), 2.0),
    ({}, 3, 3.0),
    ({"low_open": False}, 0, 0.0),
    ({"high": 1.0}, 0.999, 0.999),
    ({"high": 1.0, "high_open": False}, 1.0, 1.0),
    ({"low": 1.0, "low_open": False}, 1, 1.0),
    ({"low": None}, -5.0, -5.0),
    ({"low": None, "high": 0.0, "high_open": False}, 0.0, 0.0),
]


@pytest.mark.parametrize(("kwargs", "value", "expected"), ACCEPTED)
def test_check_real_accepts_values_in_range(kwargs: dict[str, Any], value: Any, expected: float) -> None:
    out = check_real(value, "opt", "Owner", **kwargs)
    assert out == expected and type(out) is float


REJECTED = [
    # (kwargs, value, message)
    ({}, 0.0, "Owner: opt expected a finite number > 0, got 0.0"),
    ({"low_open": False}, -1e-9, "Owner: opt expected a finite number >= 0, got -1e-09"),
    ({"high": 1.0}, 1.0, "Owner: opt expected a finite number in (0, 1), got 1.0"),
    ({"high": 1.0, "high_open": False}, 1.5, "Owner: opt expected a finite number in (0, 1], got 1.5"),
    (
        {"low_open": False, "high": 1.0, "high_open": False},
        -0.1,
        "Owner: opt expected a finite number in [0, 1], got -0.1",
    ),
    ({"low": 1.0}, 1.0, "Owner: opt expected a finite number > 1, got 1.0"),
    ({"low": None, "high": 0.0}, 0.0, "Owner: opt expected a finite number < 0, got 0.0"),
    ({"low": None}, float("nan"), "Owner: opt expected a finite number, got nan"),
    ({}, float("inf"), "Owner: opt expected a finite number > 0, got inf"),
    ({}, True, "Owner: opt expected a finite number > 0, got True"),
    ({}, np.bool_(True), "Owner: opt expected a finite number > 0, got np.True_"),
    ({}, "0.1", "Owner: opt expected a finite number > 0, got '0.1'"),
    ({}, None, "Owner: opt expected a finite number > 0, got None"),
    ({}, [0.1], "Owner: opt expected a finite number > 0, got [0.1]"),
    ({}, np.array([0.1]), "Owner: opt expected a finite number > 0, got array([0.1])"),
    ({}, 10**400, "Owner: opt expected a finite number > 0, got 1" + "0" * 400),
]


@pytest.mark.parametrize(("kwargs", "value", "message"), REJECTED)
def test_check_real_rejects_with_exact_message(kwargs: dict[str, Any], value: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_real(value, "opt", "Owner", **kwargs)
    assert str(info.value) == message


def test_check_positive_is_the_open_or_closed_half_line() -> None:
    assert check_positive(2, "h", "FDM") == 2.0
    assert check_positive(0, "g", "S", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"^FDM: h expected a finite number > 0, got 0$"):
        check_positive(0, "h", "FDM")


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.array(4)])
def test_check_int_accepts_integers(value: Any) -> None:
    out = check_int(value, "n", "Owner")
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [0, -1, 1.0, 2.5, True, "3", None, np.array([2]), np.array(2.0)])
def test_check_int_rejects_with_exact_message(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        check_int(value, "n", "Owner")
    assert str(info.value) == f"Owner: n expected an int >= 1, got {value!r}"


def test_check_int_minimum() -> None:
    assert check_int(0, "maxiter", "newton_cg_armijo", minimum=0) == 0
    with pytest.raises(ValueError, match=r"^P: k expected an int >= 2, got 1$"):
        check_int(1, "k", "P", minimum=2)


@pytest.mark.parametrize("value", [True, 1.0, "0", np.float64(3.0)])
def test_check_seed_rejects_non_ints(value: Any) -> None:
    with pytest.raises(TypeError, match=rf"^seed: expected an int or None, got {type(value).__name__}$"):
        check_seed(value)


def test_check_seed_accepts_ints_and_none() -> None:
    assert check_seed(7) == 7 and check_seed(None) is None
