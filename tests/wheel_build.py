"""Build the sdist and wheel from a copy of the sources and install the wheel in a fresh venv.

Shared by ``test_wheel.py`` and ``test_typing.py``; the work is done once per test session.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "torchzero_bridge")


@dataclass(frozen=True)
class Installed:
    workdir: Path  # outside the source tree
    wheel: Path
    sdist: Path
    python: Path  # the venv's interpreter


def clean_env() -> dict[str, str]:
    """The environment without anything that points Python at the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_CONSTRAINT")}
    env["PIP_NO_INDEX"] = "1"  # nothing from the network: the wheel alone
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


@functools.cache
def build_and_install() -> Installed:
    """sdist and wheel through setuptools' PEP 517 hooks (no build isolation, no network)."""
    work = Path(tempfile.mkdtemp(prefix="tzb-wheel-"))
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = work / "dist"
    dist.mkdir()
    hooks = (
        "import sys; from setuptools import build_meta as b; out = sys.argv[1]; "  # the hooks rewrite sys.argv
        "print(b.build_sdist(out)); print(b.build_wheel(out))"
    )
    _run([sys.executable, "-c", hooks, str(dist)], cwd=src)
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], cwd=work)
    return Installed(work, wheel, sdist, python)
