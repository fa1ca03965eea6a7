"""Closures shared by the tests."""

from __future__ import annotations

import torch


def counting_closure(model: torch.nn.Module, calls: dict[str, int]):
    """A ``closure(backward=True)`` over ``model()`` counting its runs (``calls["n"]``) and backward passes."""

    def closure(backward: bool = True) -> torch.Tensor:
        calls["n"] = calls.get("n", 0) + 1
        loss = model()
        if backward:
            calls["backward"] = calls.get("backward", 0) + 1
            model.zero_grad()
            loss.backward()
        return loss

    return closure
