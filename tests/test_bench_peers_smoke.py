"""Smoke test for benchmarks/bench_peers.py: one tiny case of each section, so the script cannot rot.

Numbers are not checked for speed (benchmarks measure that); the test checks that every bridge
runs each section and that the figures the script reports agree with independent truth (the
numpy reference's evaluation counts and losses).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchmin", reason="pytorch-minimize (torchmin) is not installed; pip install -e '.[bench]'")
pytest.importorskip("torchzero", reason="torchzero is not installed; pip install -e '.[bench]'")
pytest.importorskip("sklearn", reason="scikit-learn is not installed; pip install -e '.[bench]'")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_peers.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_peers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_peers", None)


def test_overhead_section_runs_every_bridge_on_the_reference_path(bench):
    rows = bench.overhead_section([(30, 3, 4)], 1, 0.0)
    row = rows[0]
    assert not [k for k in row if k.endswith("_error")], row
    # L-BFGS-B with ftol = gtol = 0 takes the same path whatever the bridge: same closure runs.
    for key in ("tzb", "tzb_nothreads", "torchmin", "torchzero"):
        assert row[f"{key}_nfev"] == row["reference_nfev"] > 4
        assert math.isfinite(row[f"{key}_us"])
    assert "| 30 | 3 |" in bench.overhead_markdown(rows, "1 thread")


def test_newton_section_matches_numpy_reference(bench):
    rows = bench.newton_section(["Newton-CG"], 6, 60, 1e-2, 1)
    by = {r["bridge"]: r for r in rows}
    ref = by["numpy+scipy"]
    for bridge in ("tzb", "torchmin", "torchzero"):
        assert by[bridge]["loss"] == pytest.approx(ref["loss"], rel=1e-7), bridge
    # Exact products follow the reference's path exactly; torchmin's differenced ones cost gradient runs.
    assert (by["tzb"]["nit"], by["tzb"]["closure_runs"], by["tzb"]["hessian_products"]) == (
        ref["nit"],
        ref["closure_runs"],
        ref["hessian_products"],
    )
    assert by["torchzero"]["closure_runs"] == ref["closure_runs"] + ref["hessian_products"]
    assert by["torchmin"]["closure_runs"] > by["torchmin"]["hessian_products"] > 0
    assert "Newton-CG | tzb" in bench.newton_markdown(rows, "1 thread", 6, 60)


def test_trust_krylov_without_a_hessian_is_reported_as_an_error(bench):
    row = bench.newton_case("torchmin", "trust-krylov", 4, 40, 1e-2, 1)
    assert row["error"].startswith("ValueError")


def test_float32_section_cells(bench):
    rows = bench.float32_section(["L-BFGS-B", "SLSQP"])
    assert [(r["method"], r["bridge"], r["dtype"]) for r in rows[:4]] == [
        ("L-BFGS-B", "tzb", "float64"),
        ("L-BFGS-B", "tzb", "float32"),
        ("L-BFGS-B", "torchmin", "float32"),
        ("L-BFGS-B", "torchzero", "float32"),
    ]
    base, ours = rows[0], rows[1]
    assert base["ran"] and ours["ran"] and ours["moved"]
    assert abs(ours["rel_gap"]) < 1e-2
    # The reported loss is the float64 loss at the returned parameters.
    assert ours["loss"] == pytest.approx(base["loss"], rel=1e-2)
    for r in rows:
        assert ("loss" in r) if r["ran"] else r["error"]
    table = bench.float32_markdown(rows, "1 thread")
    assert "| SLSQP |" in table and "Methods that ran: tzb 2/2" in table


def test_markdown_table_and_json_default(bench):
    assert bench.md_table(["a", "b"], [[1, None], [2.5, True]]).splitlines()[2:] == ["| 1 | – |", "| 2.5 | yes |"]
    assert bench._json_default(np.float32(1.5)) == 1.5
