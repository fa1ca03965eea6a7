"""One table of bad inputs: exact error type and a message naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchzero_bridge as tzb


def _w() -> torch.Tensor:
    return torch.zeros(3, requires_grad=True)


def _step(opt: tzb.MinimizeWrapper, closure) -> None:
    opt.step(closure)


BAD_CONSTRUCTION = [
    ("empty params", lambda: tzb.MinimizeWrapper([], method="BFGS"), ValueError, "params is empty"),
    (
        "unknown method",
        lambda: tzb.MinimizeWrapper([_w()], method="newton"),
        ValueError,
        "unknown method 'newton'.*BFGS.*trust-krylov",
    ),
    ("method type", lambda: tzb.MinimizeWrapper([_w()], method=3), TypeError, "method: expected a string"),
    (
        "non-leaf",
        lambda: tzb.MinimizeWrapper([_w() * 2], method="BFGS"),
        ValueError,
        r"\[0\] \(shape \(3,\).*not a leaf",
    ),
    (
        "integer tensor",
        lambda: tzb.MinimizeWrapper([_w(), torch.zeros(2, dtype=torch.int64)], method="BFGS"),
        TypeError,
        r"params'\]\[1\] \(shape \(2,\), torch.int64\) has integer dtype",
    ),
    ("duplicate", lambda: (lambda w: tzb.MinimizeWrapper([w, w], method="BFGS"))(_w()), ValueError, "same tensor as"),
    ("single tensor", lambda: tzb.MinimizeWrapper(_w(), method="BFGS"), TypeError, "got a single Tensor"),
    (
        "flat bounds length",
        lambda: tzb.MinimizeWrapper([_w()], method="L-BFGS-B", bounds=[(0, 1)] * 2),
        ValueError,
        "expected 3 \\(lo, hi\\) pairs.*got 2",
    ),
    (
        "group bounds shape",
        lambda: tzb.MinimizeWrapper([{"params": [_w()], "bounds": (torch.zeros(2), 1.0)}], method="L-BFGS-B"),
        ValueError,
        r"\['bounds'\] lo .*shape \(2,\) does not broadcast to the parameter's shape \(3,\)",
    ),
    (
        "lo above hi",
        lambda: tzb.MinimizeWrapper([{"params": [_w()], "bounds": (1.0, 0.0)}], method="L-BFGS-B"),
        ValueError,
        r"lower bound 1.0 is above upper bound 0.0 for param_groups\[0\]\['params'\]\[0\].*\[0\]",
    ),
    (
        "both bound kinds",
        lambda: tzb.MinimizeWrapper([{"params": [_w()], "bounds": (0.0, 1.0)}], bounds=[(0, 1)] * 3),
        ValueError,
        "either flat scipy-style bounds or per-group",
    ),
    (
        "bad jac",
        lambda: tzb.MinimizeWrapper([_w()], method="BFGS", jac="4-point"),
        ValueError,
        "jac: expected True, False",
    ),
    ("complex step", lambda: tzb.MinimizeWrapper([_w()], method="BFGS", jac="cs"), ValueError, "complex step"),
    (
        "bad hvp_method",
        lambda: tzb.MinimizeWrapper([_w()], method="Newton-CG", hvp_method="exact"),
        ValueError,
        "hvp_method: expected one of",
    ),
    (
        "unknown minimizer_args key",
        lambda: tzb.MinimizeWrapper([_w()], {"method": "BFGS", "maxiter": 3}),
        TypeError,
        r"unknown key\(s\) \['maxiter'\]",
    ),
    (
        "minimizer_args not a dict",
        lambda: tzb.MinimizeWrapper([_w()], ["BFGS"]),
        TypeError,
        "minimizer_args: expected a dict",
    ),
    (
        "given twice",
        lambda: tzb.MinimizeWrapper([_w()], {"method": "BFGS"}, method="CG"),
        ValueError,
        "method given both",
    ),
    ("timeout", lambda: tzb.MinimizeWrapper([_w()], timeout=0), ValueError, "timeout: expected a positive number"),
    (
        "threads",
        lambda: tzb.MinimizeWrapper([_w()], threads=0),
        ValueError,
        "threads: expected 'auto', None or a positive int",
    ),
    ("nonfinite", lambda: tzb.MinimizeWrapper([_w()], nonfinite="ignore"), ValueError, "nonfinite: expected one of"),
    ("callback", lambda: tzb.MinimizeWrapper([_w()], callback=3), TypeError, "callback: expected a callable"),
    (
        "bad constraint type",
        lambda: tzb.MinimizeWrapper([_w()], method="SLSQP", constraints={"type": "le", "fun": lambda: 0.0}).step(
            lambda backward=True: torch.tensor(0.0)
        ),
        ValueError,
        r"constraints\[0\]\['type'\]: expected 'eq' or 'ineq'",
    ),
]


@pytest.mark.parametrize("case", BAD_CONSTRUCTION, ids=[c[0] for c in BAD_CONSTRUCTION])
def test_bad_input_raises(case) -> None:
    _, make, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        make()


def _closure_returning(value, backward_call: bool = True):
    w = torch.zeros(3, requires_grad=True)

    def closure(backward: bool = True):
        loss = (w**2).sum()
        if backward and backward_call:
            loss.backward()
        return value(w, loss)

    return w, closure


BAD_CLOSURES = [
    ("vector loss", lambda w, loss: w * 2, "BFGS", tzb.ClosureError, r"scalar loss; got a tensor of shape \(3,\)"),
    ("None loss", lambda w, loss: None, "Nelder-Mead", tzb.ClosureError, "returned None"),
    ("string loss", lambda w, loss: "x", "Nelder-Mead", tzb.ClosureError, "scalar loss; got str"),
    ("complex loss", lambda w, loss: torch.tensor(1j), "Nelder-Mead", tzb.ClosureError, "real scalar loss"),
]


@pytest.mark.parametrize("case", BAD_CLOSURES, ids=[c[0] for c in BAD_CLOSURES])
def test_bad_closure_output_raises_and_restores(case) -> None:
    _, value, method, exc, pattern = case
    w, closure = _closure_returning(value)
    with torch.no_grad():
        w.fill_(0.5)
    opt = tzb.MinimizeWrapper([w], method=method)
    with pytest.raises(exc, match=pattern):
        opt.step(closure)
    assert torch.equal(w.detach(), torch.full((3,), 0.5))


def test_closure_without_backward_for_gradient_method() -> None:
    w, closure = _closure_returning(lambda w, loss: loss, backward_call=False)
    opt = tzb.MinimizeWrapper([w], method="BFGS")
    with pytest.raises(tzb.MissingGradientError, match=r"no parameter has a \.grad.*loss\.backward\(\)"):
        opt.step(closure)


def test_missing_closure() -> None:
    with pytest.raises(TypeError, match=r"MinimizeWrapper.step\(\) needs a closure"):
        tzb.MinimizeWrapper([_w()]).step()


IGNORED = [
    (
        "unknown option",
        dict(method="BFGS", options={"maxiter": 5, "maxfun": 3}),
        r"does not use option\(s\) \['maxfun'\]",
    ),
    ("hess for BFGS", dict(method="BFGS", hess=lambda x: np.eye(3)), "uses no Hessian; hess is ignored"),
    ("hessp for dogleg", dict(method="dogleg", hessp=lambda x, p: p), "needs a dense Hessian; hessp is ignored"),
    (
        "constraints for BFGS",
        dict(method="BFGS", constraints={"type": "eq", "fun": lambda x: x[0]}),
        "cannot handle constraints",
    ),
    ("bounds for CG", dict(method="CG", bounds=[(0, 1)] * 3), "cannot handle bounds"),
    ("jac for Nelder-Mead", dict(method="Nelder-Mead", jac=True), "uses no gradient; jac=True is ignored"),
    ("trust option", dict(method="trust-ncg", options={"inexact": True}), r"does not use option\(s\) \['inexact'\]"),
    ("hvp_method for BFGS", dict(method="BFGS", hvp_method="central"), "hvp_method='central' is ignored: method BFGS"),
    (
        "hvp_method with hessp",
        dict(method="trust-ncg", hessp=lambda x, p: p, hvp_method="forward"),
        "hvp_method='forward' is ignored: the given hess/hessp",
    ),
]


@pytest.mark.parametrize("case", IGNORED, ids=[c[0] for c in IGNORED])
def test_ignored_options_warn(case) -> None:
    _, kwargs, pattern = case
    with pytest.warns(tzb.IgnoredOptionWarning, match=pattern):
        tzb.MinimizeWrapper([_w()], **kwargs)


def test_jac_false_is_accepted_silently_for_derivative_free_methods() -> None:
    """gngdb users write jac=False for Nelder-Mead, COBYLA and Powell; that is not a mistake."""
    for method in ("Nelder-Mead", "COBYLA", "Powell"):
        tzb.MinimizeWrapper([_w()], {"method": method, "jac": False})
