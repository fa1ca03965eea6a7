"""``state_dict`` support for native optimizers whose state lives outside ``Optimizer.state``.

Example:
    >>> import torch
    >>> from torchzero_bridge.zeroth_order.state import ExtraStateMixin
    >>> class Counting(ExtraStateMixin, torch.optim.SGD):
    ...     calls = 0
    ...     def _extra_state(self):
    ...         return {"calls": self.calls}
    ...     def _load_extra_state(self, state):
    ...         self.calls = state["calls"]
    >>> a = Counting([torch.zeros(1, requires_grad=True)], lr=0.1); a.calls = 3
    >>> b = Counting([torch.zeros(1, requires_grad=True)], lr=0.1); b.load_state_dict(a.state_dict())
    >>> b.calls
    3
"""

from __future__ import annotations

import copy
from typing import Any

from torchzero_bridge.core.state import check_plain

__all__ = ["ExtraStateMixin"]

_KEY = "zeroth_order"


class ExtraStateMixin:
    """Adds ``_extra_state()`` under one key of ``state_dict()`` and restores it on load.

    Subclasses (listed before ``torch.optim.Optimizer`` in the bases) implement
    :meth:`_extra_state` and :meth:`_load_extra_state`.
    """

    def _extra_state(self) -> dict[str, Any]:
        """What a later ``step`` needs beyond torch's state (RNG, inner optimizers...)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state plus this optimizer's own (under ``"zeroth_order"``)."""
        sd = super().state_dict()  # type: ignore[misc]
        sd[_KEY] = copy.deepcopy(self._extra_state())
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved.

        Raises:
            TypeError: the state holds anything but tensors and plain Python values (checked
                before any of it is used or copied).
        """
        check_plain(state_dict)
        state_dict = dict(state_dict)
        extra = state_dict.pop(_KEY, None)
        super().load_state_dict(state_dict)  # type: ignore[misc]
        if extra is not None:
            self._load_extra_state(copy.deepcopy(extra))
