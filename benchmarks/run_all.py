"""Run every benchmark in this folder and collect their tables into one Markdown file.

Run:  python benchmarks/run_all.py            (full; tens of minutes on 2 cores)
      python benchmarks/run_all.py --quick    (smaller sizes where a script offers them)
      python benchmarks/run_all.py core peers (only these)

Each script prints Markdown tables and writes its own JSON under ``benchmarks/results/``; this
runner saves each script's printed output, with its command line and run time, as
``results/<name>.out.md``, and the latest of every benchmark, in order, as
``results/summary.md``. Benchmarks are never part of the test suite. Run them on a quiet
machine: the ratios are measured side by side in one run, but absolute times move with the
machine's load.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
QUICK_FLAGS = {
    "core": ["--quick"],
    "peers": ["--quick"],
    "ng_optuna": ["--quick"],
    "zeroth_order": ["--epochs", "5"],
    "distributed": ["--quick"],
    "derivative_free": ["--quick"],
}


def scripts() -> dict[str, Path]:
    """Benchmark name -> script, in a stable order."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {sorted(scripts())})")
    parser.add_argument("--quick", action="store_true", help="pass each script's quick option")
    args = parser.parse_args()
    available = scripts()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; expected some of {sorted(available)}")
    names = args.names or list(available)
    RESULTS.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    failed = []
    for name in names:
        cmd = [sys.executable, str(available[name]), *(QUICK_FLAGS.get(name, []) if args.quick else [])]
        shown = " ".join(["python", f"benchmarks/{available[name].name}", *cmd[2:]])
        print(f"== {shown}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE.parent)
        seconds = time.perf_counter() - t
        stdout = proc.stdout.replace(str(HERE.parent) + os.sep, "")  # paths relative to the repository
        print(stdout[-4000:], flush=True)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-4000:], file=sys.stderr)
        status = "" if proc.returncode == 0 else f" — FAILED (exit {proc.returncode})"
        (RESULTS / f"{name}.out.md").write_text(f"## {name}{status}\n\n`{shown}` ({seconds:.0f} s)\n\n{stdout}\n")
    # the summary holds the latest output of every benchmark, whichever were run this time
    sections = [
        "# Benchmark summary\n\n",
        f"Machine: Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}.\n\n",
    ]
    outputs = [RESULTS / f"{name}.out.md" for name in available]
    sections += [p.read_text() for p in outputs if p.exists()]
    (RESULTS / "summary.md").write_text("".join(sections))
    print(f"wrote {RESULTS / 'summary.md'}")
    if failed:
        sys.exit(f"failed: {failed}")


if __name__ == "__main__":
    main()
