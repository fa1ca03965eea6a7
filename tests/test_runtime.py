"""Thread limits and the progress bar (the quickstart runs in tests/test_examples.py)."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

import torchzero_bridge as tzb


def _blas_threads() -> list[int]:
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


@pytest.mark.parametrize("threads", ["auto", 1, None])
def test_blas_threads_limited_only_while_scipy_runs(threads) -> None:
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    seen: list[tuple[list[int], int]] = []
    before_blas, before_torch = _blas_threads(), torch.get_num_threads()

    def closure(backward: bool = True) -> torch.Tensor:
        seen.append((_blas_threads(), torch.get_num_threads()))
        w.grad = None
        loss = ((w - 2.0) ** 2).sum()
        if backward:
            loss.backward()
        return loss

    tzb.MinimizeWrapper([w], method="BFGS", threads=threads).step(closure)
    blas, torch_threads = seen[0]
    if threads is None:
        assert blas == before_blas
    else:
        assert all(n == 1 for n in blas)
    assert torch_threads == (1 if threads == 1 else before_torch)
    assert _blas_threads() == before_blas and torch.get_num_threads() == before_torch


def test_progress_bar_counts_evaluations(capsys) -> None:
    w = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = tzb.MinimizeWrapper([w], method="Nelder-Mead", progress=True, options={"maxfev": 40})
    opt.step(lambda backward=True: ((w - 2.0) ** 2).sum())
    err = capsys.readouterr().err
    assert "MinimizeWrapper" in err and "40eval" in err.replace(" ", "") and "best=" in err
