"""The built distributions carry the license, the type marker and the metadata, and the wheel
installed in a fresh venv (outside the source tree) imports from the venv and runs a fit."""

from __future__ import annotations

import subprocess
import tarfile
import zipfile
from email.parser import Parser

import pytest
from wheel_build import ROOT, build_and_install, clean_env

pytestmark = pytest.mark.slow


def test_wheel_contents_and_metadata() -> None:
    inst = build_and_install()
    with zipfile.ZipFile(inst.wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
        license_files = [n for n in names if n.endswith("/LICENSE")]
        assert license_files, names
        assert b"MIT License" in z.read(license_files[0])
    assert "torchzero_bridge/py.typed" in names
    assert "torchzero_bridge/scipy/minimize.py" in names
    assert not any(n.startswith(("tests/", "examples/", "benchmarks/", "docs/")) for n in names)
    assert meta["License-Expression"] == "MIT"
    assert meta["Author"] or meta["Author-email"]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Repository", "Changelog"} <= set(urls)
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.") for c in classifiers)
    extras = meta.get_all("Provides-Extra")
    assert {"nevergrad", "optuna", "docs", "test"} <= set(extras)


def test_sdist_contains_license_and_marker() -> None:
    inst = build_and_install()
    with tarfile.open(inst.sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"LICENSE", "pyproject.toml", "README.md", "torchzero_bridge/py.typed"} <= names


FIT = """
import numpy as np, torch, torchzero_bridge as tzb
from scipy.optimize import minimize, rosen, rosen_der
print(tzb.__file__)
x = torch.tensor([-1.2, 1.0, 0.8], dtype=torch.float64, requires_grad=True)
opt = tzb.MinimizeWrapper([x], method="L-BFGS-B")
def closure(backward=True):
    opt.zero_grad()
    loss = torch.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    if backward:
        loss.backward()
    return loss
opt.step(closure)
ref = minimize(rosen, np.array([-1.2, 1.0, 0.8]), jac=rosen_der, method="L-BFGS-B")
assert opt.result.nit == ref.nit, (opt.result.nit, ref.nit)
assert np.allclose(x.detach().numpy(), ref.x, atol=1e-8), (x, ref.x)
print("fit ok", opt.result.nit)
"""


def test_installed_wheel_imports_from_the_venv_and_fits() -> None:
    inst = build_and_install()
    proc = subprocess.run(
        [str(inst.python), "-c", FIT], cwd=inst.workdir, env=clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    module_file, status = proc.stdout.strip().splitlines()[-2:]
    venv = (inst.workdir / "venv").resolve()
    assert module_file.startswith(str(venv)), module_file
    assert not module_file.startswith(str(ROOT)), module_file
    assert status.startswith("fit ok")
