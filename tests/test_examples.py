"""Every example runs to completion with warnings turned into errors, prints its results and
nothing on stderr; the quickstart also stays within its CPU budget and prints a line per solver."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
QUICKSTART_CPU_BUDGET_S = 30.0  # the README promises under 30 s of CPU time


def _run(name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "TZB_OPTUNA_STORAGE": f"sqlite:///{tmp_path / 'study.db'}",  # keep the example's own study file clean
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, cpu


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_without_warnings(name: str, tmp_path: Path) -> None:
    proc, cpu = _run(name, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "an example prints what it reached"
    assert proc.stderr.strip() == "", f"{name} wrote to stderr:\n{proc.stderr[-3000:]}"
    if name == "quickstart.py":
        rows = [line for line in proc.stdout.splitlines() if line.split() and line.split()[-1][:1].isdigit()]
        assert len(rows) == 9, proc.stdout  # one line per solver
        assert {line.split()[-5] for line in rows} == {"65"}, "every solver fits the same 65-parameter model"
        assert cpu < QUICKSTART_CPU_BUDGET_S, f"quickstart took {cpu:.1f} s of CPU"
        for line in rows:  # the gradient methods fit the data
            if line.startswith(("L-BFGS-B", "Newton-CG", "trust-krylov")):
                loss, acc = float(line.split()[-4]), float(line.split()[-3])
                assert loss < 0.1 and acc > 0.9, line
