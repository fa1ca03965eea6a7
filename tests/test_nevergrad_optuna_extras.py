"""nevergrad and optuna are optional: the package imports without them and says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("nevergrad", "optuna"):
                raise ImportError(f"No module named {name!r} (hidden by the test)")
            return None

    sys.meta_path.insert(0, Hide())
    import torch
    import torchzero_bridge as tzb

    w = torch.zeros(2)
    for make, extra in (
        (lambda: tzb.NevergradWrapper([w], budget=5), "nevergrad"),
        (lambda: tzb.OptunaWrapper([{"params": [w], "bounds": (0, 1)}], n_trials=5), "optuna"),
    ):
        try:
            make()
        except ImportError as e:
            assert f"pip install torchzero_bridge[{extra}]" in str(e), str(e)
        else:
            raise AssertionError(f"no ImportError without {extra}")
    print("ok")
    """
)


def test_package_imports_without_nevergrad_and_optuna() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_importing_the_package_does_not_import_the_extras() -> None:
    code = "import sys, torchzero_bridge; print(sorted({'nevergrad', 'optuna'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]
