"""Paired comparison of bench_core's overhead rows between two checkouts, in one run.

Each repetition times every row in a fresh process per checkout, alternating which checkout
goes first, with that checkout's own ``bench_core.overhead`` and package on the path. The table
gives the median over repetitions and the ratio base / head.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_core_ab.py --base /path/to/main --head . --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROWS = [
    (1, 1, 2000),
    (10, 10, 2000),
    (100, 100, 500),
    (1000, 1000, 100),
    (100_000, 1000, 50),
    (1_000_000, 1, 20),
    (1_000_000, 10, 20),
]  # (entries, tensors, evaluations per repetition)

CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1] + "/benchmarks")
import bench_core, torchzero_bridge
assert torchzero_bridge.__file__.startswith(sys.argv[1]), torchzero_bridge.__file__
rows = json.loads(sys.argv[2])
print(json.dumps([bench_core.overhead(n, k, e, 3)["overhead_us"] for n, k, e in rows]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="checkout timed as the baseline")
    parser.add_argument("--head", default=".", help="checkout timed against it")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    trees = {"base": str(Path(args.base).resolve()), "head": str(Path(args.head).resolve())}
    times: dict[str, list[list[float]]] = {"base": [], "head": []}
    for rep in range(args.reps):
        order = ["base", "head"] if rep % 2 == 0 else ["head", "base"]
        for name in order:
            env = dict(os.environ, PYTHONPATH=trees[name])
            cmd = [sys.executable, "-c", CHILD, trees[name], json.dumps(ROWS)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            times[name].append(json.loads(out))
    print("| n_params | n_tensors | base overhead_us | head overhead_us | base / head |")
    print("|---|---|---|---|---|")
    for i, (n, k, _) in enumerate(ROWS):
        a = statistics.median(r[i] for r in times["base"])
        b = statistics.median(r[i] for r in times["head"])
        print(f"| {n} | {k} | {a:.1f} | {b:.1f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
