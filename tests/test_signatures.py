"""Public signatures show readable defaults (no sentinel objects) and the defaults keep their meaning."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, rosen, rosen_der

import torchzero_bridge as tzb


def _public_callables() -> list[tuple[str, object]]:
    out = []
    for name in tzb.__all__:
        obj = getattr(tzb, name)
        if inspect.isfunction(obj) or (inspect.isclass(obj) and not issubclass(obj, BaseException)):
            out.append((name, obj))
    return out


@pytest.mark.parametrize(("name", "obj"), _public_callables(), ids=lambda v: v if isinstance(v, str) else "")
def test_no_sentinel_defaults(name: str, obj: object) -> None:
    sig = inspect.signature(obj)  # type: ignore[arg-type]
    for p in sig.parameters.values():
        assert "object at 0x" not in repr(p.default), f"{name}({p.name}=...) shows {p.default!r}"


def test_minimize_wrapper_signature_reads_well() -> None:
    text = str(inspect.signature(tzb.MinimizeWrapper))
    assert "method: 'str | Callable[..., Any] | None' = None" in text or "method=None" in text.replace(" ", "")
    assert "jac: 'Any' = 'auto'" in text or "jac='auto'" in text.replace(" ", "")


def _rosen_fit(**kwargs: object) -> tzb.MinimizeWrapper:
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([x], **kwargs)

    def closure(backward: bool = True) -> torch.Tensor:
        opt.zero_grad()
        loss = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
        if backward:
            loss.backward()
        return loss

    opt.step(closure)
    return opt


def test_default_jac_is_autograd_like_scipy_with_exact_jac() -> None:
    ref = minimize(rosen, np.array([-1.2, 1.0]), jac=rosen_der, method="BFGS")
    opt = _rosen_fit(method="BFGS")
    assert opt.result.nit == ref.nit and opt.result.nfev == ref.nfev
    np.testing.assert_allclose(opt.result.x, ref.x, rtol=0, atol=1e-10)


def test_jac_none_keyword_still_means_scipy_finite_differences() -> None:
    ref = minimize(rosen, np.array([-1.2, 1.0]), method="BFGS")  # scipy differences the function
    opt = _rosen_fit(method="BFGS", jac=None)
    assert opt.result.nfev > 2 * opt.result.nit  # gradients cost function evaluations
    assert opt.result.njev == ref.njev  # scipy's own count of its finite-difference gradients
    np.testing.assert_allclose(opt.result.fun, ref.fun, atol=1e-9)


def test_keyword_at_default_does_not_clash_with_minimizer_args() -> None:
    x = torch.zeros(2, requires_grad=True)
    opt = tzb.MinimizeWrapper([x], {"method": "CG", "tol": 1e-3}, tol=None, jac="auto")
    assert opt.minimizer_args["method"] == "CG" and opt.minimizer_args["tol"] == 1e-3
    with pytest.raises(ValueError, match="tol given both"):
        tzb.MinimizeWrapper([x], {"tol": 1e-3}, tol=1e-4)
