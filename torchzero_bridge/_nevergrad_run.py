"""The nevergrad side of :class:`~torchzero_bridge.NevergradWrapper`: the parametrization and the run's history.

A nevergrad optimizer cannot be saved as plain data, and unpickling one would run code, so
a checkpoint holds what determines the run instead: the settings, the seed, the start point,
and every ask, tell and recommendation in order (each tell's loss, each ask's fingerprint).
Loading rebuilds the optimizer from the seed and replays that history, checking that every
replayed ask gives exactly the recorded candidate; nevergrad's internal state is then the
one the saved run had.

Example:
    >>> import numpy as np
    >>> from torchzero_bridge._nevergrad_run import fingerprint
    >>> fingerprint(np.array([1.0, 2.0])) == fingerprint(np.array([1.0, 2.0]))
    True
"""

from __future__ import annotations

import difflib
import hashlib
import math
import warnings
from typing import Any

import numpy as np
import torch

from torchzero_bridge.core.flat import FlatParams

__all__ = ["AskTellHistory", "NevergradSpace", "fingerprint", "suggest_names"]

_ASK, _TELL, _RECOMMEND = 0, 1, 2


def fingerprint(x: np.ndarray) -> int:
    """A signed 64-bit digest of the exact bytes of a float64 vector."""
    digest = hashlib.blake2b(np.ascontiguousarray(x, dtype=np.float64).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def suggest_names(name: str, known: list[str]) -> str:
    """A hint listing registry names close to ``name``."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.6)
    if close:
        return "did you mean " + ", ".join(repr(lowered[c]) for c in close) + "?"
    return "see nevergrad.optimizers.registry for the available names"


class NevergradSpace:
    """The nevergrad parametrization of a :class:`FlatParams` layout, and the way back.

    Floating entries form one ``ng.p.Array``; integer tensors another, with integer casting;
    boolean tensors a ``ng.p.Choice([False, True], repetitions=k)``. A single kind is used
    directly, several are wrapped in ``ng.p.Tuple`` (in that order).
    """

    def __init__(
        self,
        ng: Any,
        flat: FlatParams,
        x0: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray] | None,
        sigma: np.ndarray | None,
    ) -> None:
        n = flat.n
        codes = flat.layout.kind_codes
        kinds = [
            ("float", np.flatnonzero(codes == 0)),
            ("int", np.flatnonzero(codes == 1)),
            ("bool", np.flatnonzero(codes == 2)),
        ]
        parts: list[Any] = []
        self.index: list[np.ndarray] = []
        for kind, idx in kinds:
            if idx.size == 0:
                continue
            if kind == "bool":
                part = ng.p.Choice([False, True], repetitions=int(idx.size))
                part.value = tuple(bool(v >= 0.5) for v in x0[idx])
            else:
                part = ng.p.Array(init=x0[idx].copy())
                if sigma is not None:  # before the bounds, which nevergrad checks against sigma
                    s = sigma[idx]
                    part.set_mutation(sigma=float(s[0]) if np.all(s == s[0]) else s.copy())
                if bounds is not None:
                    lo, hi = bounds[0][idx], bounds[1][idx]
                    if np.isfinite(lo).any() or np.isfinite(hi).any():
                        part.set_bounds(
                            lower=lo if np.isfinite(lo).any() else None,
                            upper=hi if np.isfinite(hi).any() else None,
                        )
                if kind == "int":
                    part.set_integer_casting()
            parts.append(part)
            self.index.append(idx)
        self.n = n
        self.single = len(parts) == 1
        self.parametrization = parts[0] if self.single else ng.p.Tuple(*parts)

    def decode(self, candidate: Any) -> np.ndarray:
        """Flat float64 vector of a candidate's value (a view may be returned; do not modify)."""
        if self.single:
            return np.asarray(candidate.value, dtype=np.float64).reshape(-1)
        x = np.empty(self.n)
        for idx, v in zip(self.index, candidate.value):
            x[idx] = np.asarray(v, dtype=np.float64).reshape(-1)
        return x


class AskTellHistory:
    """Every ask, tell and recommendation made on one nevergrad optimizer, and their replay.

    Args:
        space: decodes candidates into flat vectors (for the fingerprints).

    Example:
        >>> h = AskTellHistory.__new__(AskTellHistory)
        >>> h.events, h.fingerprints, h.told, h.losses = [], [], [], []
        >>> h.state()["events"].tolist()
        []
    """

    def __init__(self, space: NevergradSpace) -> None:
        self.space = space
        self.events: list[int] = []
        self.fingerprints: list[int] = []
        self.told: list[int] = []
        self.losses: list[float] = []
        self._open: dict[int, int] = {}  # id(candidate) -> its ask index, until it is told

    def ask(self, opt: Any) -> Any:
        """``opt.ask()``, recorded."""
        cand = opt.ask()
        self._open[id(cand)] = len(self.fingerprints)
        self.fingerprints.append(fingerprint(self.space.decode(cand)))
        self.events.append(_ASK)
        return cand

    def tell(self, opt: Any, cand: Any, loss: float) -> None:
        """``opt.tell(cand, loss)``, recorded (non-finite losses go in as they are; nevergrad clips them)."""
        index = self._open.pop(id(cand))
        _tell(opt, cand, loss)
        self.told.append(index)
        self.losses.append(float(loss))
        self.events.append(_TELL)

    def recommend(self, opt: Any) -> Any:
        """``opt.provide_recommendation()``, recorded (some solvers draw random numbers there)."""
        rec = opt.provide_recommendation()
        self.events.append(_RECOMMEND)
        return rec

    def check_in_sync(self, opt: Any) -> None:
        """Raise when the optimizer was asked or told outside this history (it could not be replayed)."""
        asks, tells = len(self.fingerprints), len(self.told)
        if opt.num_ask != asks or opt.num_tell != tells:
            raise RuntimeError(
                f"state_dict: the nevergrad optimizer has {opt.num_ask} asks and {opt.num_tell} tells but the wrapper "
                f"made {asks} and {tells}; a run asked or told through ng_optimizer directly cannot be saved"
            )

    def state(self) -> dict[str, Any]:
        """The history as tensors."""
        return {
            "events": torch.tensor(self.events, dtype=torch.int8),
            "fingerprints": torch.tensor(self.fingerprints, dtype=torch.int64),
            "told": torch.tensor(self.told, dtype=torch.int64),
            "losses": torch.tensor(self.losses, dtype=torch.float64),
        }

    def replay(self, opt: Any, saved: dict[str, Any], name: str) -> list[Any]:
        """Replay a saved history on a freshly built ``opt``; returns the candidates asked but not told.

        Raises:
            ValueError: the saved arrays are inconsistent.
            RuntimeError: a replayed ask differs from the recorded one (the solver does not
                replay deterministically, or nevergrad changed).
        """
        events = [int(v) for v in np.asarray(saved["events"]).reshape(-1)]
        prints = [int(v) for v in np.asarray(saved["fingerprints"]).reshape(-1)]
        told = [int(v) for v in np.asarray(saved["told"]).reshape(-1)]
        losses = [float(v) for v in np.asarray(saved["losses"], dtype=np.float64).reshape(-1)]
        if (
            events.count(_ASK) != len(prints)
            or events.count(_TELL) != len(told)
            or len(losses) != len(told)
            or any(e not in (_ASK, _TELL, _RECOMMEND) for e in events)
        ):
            raise ValueError("state_dict: the saved nevergrad history is inconsistent")
        open_: dict[int, Any] = {}
        t = 0
        for event in events:
            if event == _ASK:
                k = len(self.fingerprints)
                cand = self.ask(opt)
                if self.fingerprints[-1] != prints[k]:
                    raise RuntimeError(
                        f"load_state_dict: replaying the {name} run from its seed gave a different candidate at ask "
                        f"{k + 1} of {len(prints)}; this nevergrad optimizer does not replay deterministically "
                        "(or nevergrad's version changed), so the run cannot be resumed"
                    )
                open_[k] = cand
            elif event == _TELL:
                k = told[t]
                if k not in open_:
                    raise ValueError(f"state_dict: the saved nevergrad history tells ask {k} that is not open")
                self.tell(opt, open_.pop(k), losses[t])
                t += 1
            else:
                self.recommend(opt)
        return [open_[k] for k in sorted(open_)]


def _tell(opt: Any, candidate: Any, loss: float) -> None:
    if math.isfinite(loss):
        opt.tell(candidate, loss)
        return
    # nevergrad clips non-finite losses itself; our NonFiniteLossWarning already said so
    from nevergrad.common.errors import LossTooLargeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossTooLargeWarning)
        opt.tell(candidate, loss)
