"""The optuna side of :class:`~torchzero_bridge.OptunaWrapper`: the search space and the plain-data state.

An optuna sampler or ``FrozenTrial`` cannot go into a checkpoint that loads under
``torch.load(weights_only=True)``, and unpickling a saved sampler would run code. The state
therefore holds plain values only: each trial's number, state, values, parameters,
distributions (optuna's own JSON text), attributes and times, and the state of every random
generator inside the sampler. Loading rebuilds the trials with ``FrozenTrial`` and writes the
generator states into the sampler this wrapper was constructed with (same class and
settings), so the next trial is the one the saved run would have asked.

Example:
    >>> import optuna
    >>> from torchzero_bridge._optuna_run import load_sampler_state, sampler_state
    >>> a, b = optuna.samplers.RandomSampler(seed=1), optuna.samplers.RandomSampler(seed=2)
    >>> load_sampler_state(b, sampler_state(a))
    >>> a._rng.rng.rand() == b._rng.rng.rand()
    True
"""

from __future__ import annotations

import datetime
import random
from typing import Any

import numpy as np
import torch

from torchzero_bridge._optional import import_extra
from torchzero_bridge.core.flat import FlatParams
from torchzero_bridge.core.state import to_plain

__all__ = ["OptunaSpace", "load_sampler_state", "sampler_state", "trials_from_plain", "trials_to_plain"]


def _optuna() -> Any:
    return import_extra("optuna", extra="optuna", owner="OptunaWrapper")


class OptunaSpace:
    """Suggestion names and ranges for every flat entry, and the way from a trial back to a vector."""

    def __init__(self, flat: FlatParams, bounds: tuple[np.ndarray, np.ndarray] | None) -> None:
        n = flat.n
        self.n = n
        self.names = [f"x{k}" for k in range(n)]
        kind = flat.layout.kind_codes  # 0 float, 1 int, 2 bool
        needs = np.flatnonzero(kind != 2)
        lo = np.full(n, -np.inf) if bounds is None else bounds[0]
        hi = np.full(n, np.inf) if bounds is None else bounds[1]
        open_ = needs[~(np.isfinite(lo[needs]) & np.isfinite(hi[needs]))]
        if open_.size:
            k = int(open_[0])
            raise ValueError(
                f"bounds: optuna samples every value from a finite range, but {flat.locate(k)} and "
                f"{open_.size - 1} other entries have no finite (lo, hi); give the param group bounds=(lo, hi)"
            )
        ints = np.flatnonzero(kind == 1)
        self.lo, self.hi = flat.layout.integral_box((lo, hi))
        self.kind = kind
        self.all_float = not kind.any()
        self.float_specs = [(self.names[k], float(self.lo[k]), float(self.hi[k])) for k in range(n) if kind[k] == 0]
        self.float_idx = np.flatnonzero(kind == 0)
        self.int_specs = [(self.names[k], int(self.lo[k]), int(self.hi[k])) for k in ints]
        self.int_idx = ints
        self.bool_names = [self.names[k] for k in np.flatnonzero(kind == 2)]
        self.bool_idx = np.flatnonzero(kind == 2)

    def suggest(self, trial: Any) -> np.ndarray:
        """Ask ``trial`` for every entry; the flat vector is built from the returned values."""
        sf = trial.suggest_float
        if self.all_float:
            return np.array([sf(name, lo, hi) for name, lo, hi in self.float_specs], dtype=np.float64)
        x = np.empty(self.n)
        if self.float_specs:
            x[self.float_idx] = [sf(name, lo, hi) for name, lo, hi in self.float_specs]
        if self.int_specs:
            si = trial.suggest_int
            x[self.int_idx] = [si(name, lo, hi) for name, lo, hi in self.int_specs]
        if self.bool_names:
            sc = trial.suggest_categorical
            x[self.bool_idx] = [sc(name, (False, True)) for name in self.bool_names]
        return x

    def distributions(self) -> dict[str, Any]:
        """optuna distributions matching :meth:`suggest` (for ``create_trial``)."""
        dist = _optuna().distributions
        out: dict[str, Any] = {}
        for name, lo, hi in self.float_specs:
            out[name] = dist.FloatDistribution(lo, hi)
        for name, lo, hi in self.int_specs:
            out[name] = dist.IntDistribution(lo, hi)
        for name in self.bool_names:
            out[name] = dist.CategoricalDistribution((False, True))
        return {name: out[name] for name in self.names}

    def params_of(self, x: np.ndarray) -> dict[str, Any]:
        """The optuna parameter dict for flat vector ``x`` (for ``create_trial``)."""
        out: dict[str, Any] = {}
        for k, name in enumerate(self.names):
            v = x[k]
            out[name] = float(v) if self.kind[k] == 0 else (int(np.rint(v)) if self.kind[k] == 1 else bool(v >= 0.5))
        return out

    def vector_of(self, params: dict[str, Any]) -> np.ndarray:
        """Flat vector of a trial's parameter dict."""
        try:
            return np.array([float(params[name]) for name in self.names], dtype=np.float64)
        except KeyError as e:
            raise ValueError(
                f"the study's best trial has no parameter {e.args[0]!r}: the study was filled by a model with a "
                "different layout; use a new study_name"
            ) from None


# ---------------------------------------------------------------------- sampler random state
def _generators(obj: Any, path: str, out: dict[str, Any], seen: set[int]) -> None:
    """Every random generator reachable from an optuna object, by attribute path (sorted walk)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (np.random.RandomState, np.random.Generator, random.Random)):
        out[path] = obj
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _generators(v, f"{path}[{i}]", out, seen)
        return
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            _generators(obj[k], f"{path}[{k!r}]", out, seen)
        return
    if isinstance(obj, type) or not type(obj).__module__.startswith("optuna"):
        return
    if hasattr(type(obj), "rng") and hasattr(obj, "_rng"):  # optuna's LazyRandomState: create it now
        obj.rng  # noqa: B018
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return
    for name in sorted(attrs):
        _generators(attrs[name], f"{path}.{name}", out, seen)


def sampler_state(sampler: Any) -> dict[str, Any]:
    """The sampler's class and the state of every random generator in it, as plain values."""
    gens: dict[str, Any] = {}
    _generators(sampler, "sampler", gens, set())
    states: dict[str, Any] = {}
    for path, g in gens.items():
        if isinstance(g, np.random.RandomState):
            states[path] = {"type": "RandomState", "state": g.get_state(legacy=False)}
        elif isinstance(g, np.random.Generator):
            states[path] = {"type": "Generator", "state": g.bit_generator.state}
        else:
            states[path] = {"type": "Random", "state": g.getstate()}
    return {"class": _class_name(sampler), "generators": to_plain(states, where="sampler")}


def load_sampler_state(sampler: Any, state: dict[str, Any]) -> None:
    """Write a :func:`sampler_state` into ``sampler`` (built with the same class and settings).

    Raises:
        ValueError: another sampler class, or a generator missing on either side.
    """
    if state.get("class") != _class_name(sampler):
        raise ValueError(
            f"load_state_dict: the state was saved with a {state.get('class')} sampler but this OptunaWrapper has a "
            f"{_class_name(sampler)}; construct it with the same sampler class and settings"
        )
    gens: dict[str, Any] = {}
    _generators(sampler, "sampler", gens, set())
    saved = state.get("generators", {})
    if set(saved) != set(gens):
        raise ValueError(
            f"load_state_dict: the sampler's random generators {sorted(gens)} differ from the saved {sorted(saved)}"
        )
    for path, g in gens.items():
        st = saved[path]
        if st["type"] == "RandomState" and isinstance(g, np.random.RandomState):
            g.set_state(_numpy_state(st["state"]))
        elif st["type"] == "Generator" and isinstance(g, np.random.Generator):
            g.bit_generator.state = _numpy_state(st["state"])
        elif st["type"] == "Random" and isinstance(g, random.Random):
            g.setstate(_tuples(st["state"]))
        else:
            raise ValueError(f"load_state_dict: {path} is a {type(g).__name__} but was saved as {st['type']}")


def _numpy_state(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.numpy().copy()
    if isinstance(state, dict):
        return {k: _numpy_state(v) for k, v in state.items()}
    return state


def _tuples(state: Any) -> Any:
    return tuple(_tuples(v) for v in state) if isinstance(state, (list, tuple)) else state


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# ---------------------------------------------------------------------- trials
def trials_to_plain(trials: list[Any]) -> list[dict[str, Any]]:
    """Trials as plain values (distributions as optuna's JSON text, times as ISO strings)."""
    dist = _optuna().distributions
    out = []
    for t in trials:
        out.append(
            {
                "number": t.number,
                "state": t.state.name,
                "values": None if t.values is None else [float(v) for v in t.values],
                "params": dict(t.params),
                "distributions": {k: dist.distribution_to_json(d) for k, d in t.distributions.items()},
                "user_attrs": t.user_attrs,
                "system_attrs": t.system_attrs,
                "intermediate_values": {int(k): float(v) for k, v in t.intermediate_values.items()},
                "datetime_start": None if t.datetime_start is None else t.datetime_start.isoformat(),
                "datetime_complete": None if t.datetime_complete is None else t.datetime_complete.isoformat(),
            }
        )
    return to_plain(out, where="trials")


_PICKLED_ATTRS = ("cma:optimizer", "sepcma:optimizer", "cmawm:optimizer")
"""Trial system attributes that optuna's ``CmaEsSampler`` unpickles (hex text) when it samples."""


def trials_from_plain(saved: list[dict[str, Any]]) -> list[Any]:
    """``FrozenTrial`` objects from :func:`trials_to_plain` (JSON text is parsed, nothing unpickled).

    Raises:
        ValueError: a trial carries a system attribute that optuna's ``CmaEsSampler`` would
            unpickle at the next step (a checkpoint must not bring code into the study).
    """
    opt = _optuna()
    dist = opt.distributions
    out = []
    for i, t in enumerate(saved):
        bad = [k for k in t["system_attrs"] if str(k).startswith(_PICKLED_ATTRS)]
        if bad:
            raise ValueError(
                f"load_state_dict: trial {t['number']} carries {bad[0]!r}, pickled sampler state that optuna would "
                "unpickle; an in-memory study with CmaEsSampler cannot be restored from a checkpoint, use a "
                "persistent storage (e.g. 'sqlite:///study.db') instead"
            )
        values = t["values"]
        out.append(
            opt.trial.FrozenTrial(
                number=int(t["number"]),
                state=opt.trial.TrialState[str(t["state"])],
                value=None,
                values=None if values is None else [float(v) for v in values],
                datetime_start=_time(t["datetime_start"]),
                datetime_complete=_time(t["datetime_complete"]),
                params=dict(t["params"]),
                distributions={k: dist.json_to_distribution(str(v)) for k, v in t["distributions"].items()},
                user_attrs=dict(t["user_attrs"]),
                system_attrs=dict(t["system_attrs"]),
                intermediate_values={int(k): float(v) for k, v in t["intermediate_values"].items()},
                trial_id=i,
            )
        )
    return out


def _time(text: str | None) -> datetime.datetime | None:
    return None if text is None else datetime.datetime.fromisoformat(text)
