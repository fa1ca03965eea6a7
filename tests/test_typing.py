"""A user's script type-checked by mypy against the installed wheel sees the package's types
(the ``py.typed`` marker is shipped): mypy reveals real signatures and reports a wrong argument."""

from __future__ import annotations

import subprocess
import sys

import pytest
from wheel_build import build_and_install, clean_env

pytestmark = pytest.mark.slow

USER_SCRIPT = """
import torch
import torchzero_bridge as tzb

w = torch.zeros(2, requires_grad=True)
opt = tzb.MinimizeWrapper([w], method="BFGS")
reveal_type(opt.step)
reveal_type(tzb.MinimizeWrapper.__init__)
tzb.MinimizeWrapper([w], timeout="soon")  # wrong on purpose: timeout is a float
"""

# torch, numpy and scipy are left unanalysed (seen as Any): their own types are not under test, and
# analysing torch from scratch costs minutes
MYPY_INI = """
[mypy]
ignore_missing_imports = False
[mypy-torch.*,numpy.*,scipy.*,nevergrad.*,optuna.*,tqdm.*,threadpoolctl.*]
follow_imports = skip
ignore_missing_imports = True
"""


def test_mypy_on_a_user_script_sees_the_package_types() -> None:
    pytest.importorskip("mypy")
    inst = build_and_install()
    user = inst.workdir / "user"
    user.mkdir(exist_ok=True)
    (user / "script.py").write_text(USER_SCRIPT)
    (user / "mypy.ini").write_text(MYPY_INI)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--python-executable", str(inst.python), "--no-incremental", "script.py"],
        cwd=user,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert "py.typed" not in out and "missing library stubs" not in out, out
    assert 'Revealed type is "def (' in out and "timeout: float | None =" in out, out
    assert 'Argument "timeout" to "MinimizeWrapper" has incompatible type "str"' in out, out
    assert proc.returncode == 1, out  # exactly the intentional error
    assert "Found 1 error" in out, out
