"""Memory benchmark: peak memory and step time of each zeroth-order estimator against inference and backprop.

The model is built locally (no downloads): an embedding and a 10-layer ``TransformerEncoder``
(``d_model=512``, 8 heads, feed-forward 2048, no dropout) with a mean-pooled linear classifier,
about 35.6M float32 parameters, on a batch of 8 sequences of 128 tokens. Every row runs in a
fresh process: build the model, record the resident set size (``VmRSS``), reset the peak
(``/proc/self/clear_refs``), run one untimed step and ``--steps`` timed ones, and read the
peak resident set size (``VmHWM``). Every row first constructs a throwaway
``torch.optim.SGD`` (which imports ``torch._dynamo``, ~70 MB of code), the forward row too, so
that the rows differ by their steps and not by their imports. Rows:

* ``forward (no_grad)``: the loss under ``torch.no_grad()``: what inference costs;
* ``backward + Adam``: ``loss.backward()`` and ``torch.optim.Adam``: what backprop costs;
* the estimators, each with one sample: ``MeZO + SGD``, ``MeZO (opt=None)``, ``SPSA + SGD``,
  ``RDSA`` (no ``opt``: fills ``.grad``), ``RandomizedFDM`` (Rademacher, no ``opt``),
  ``GaussianSmoothing`` (``n_samples=4``, forward differences, 5 forward passes), ``RandomGrad``.

Reported per row: the built model's RSS, the peak RSS, the extra peak over the built model, the
peak as a multiple of the forward row's (total and extra), and the step time as a multiple of
the forward row's and of a no_grad forward timed right after each step in the same process
(steadier on a shared machine). Rounds run every row once, in order, ``--rounds`` times (side by side: on a
shared machine the time ratios move with the load); the table shows each row's median over
the rounds, and ratios are taken within a round. With CUDA, the same rows run on the GPU with
``torch.cuda.max_memory_allocated`` (peak over the built model's ``memory_allocated``).

Run:  python benchmarks/bench_memory.py              (writes benchmarks/results/memory.json)
      python benchmarks/bench_memory.py --rounds 1   (quicker)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torchzero_bridge as tzb

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = [
    "forward (no_grad)",
    "backward + Adam",
    "MeZO + SGD",
    "MeZO (opt=None)",
    "SPSA + SGD",
    "RDSA",
    "RandomizedFDM",
    "GaussianSmoothing (n=4)",
    "RandomGrad",
]


def build(device: str) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    """The model and a closure over one fixed batch."""
    # every row loads torch's optimizer machinery (constructing any optimizer imports
    # torch._dynamo, ~70 MB of code), so that the rows differ by their steps, not their imports
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    torch.manual_seed(0)
    d, vocab = 512, 8000
    layer = torch.nn.TransformerEncoderLayer(d, 8, 2048, dropout=0.0, batch_first=True)
    model = torch.nn.ModuleDict(
        {
            "embed": torch.nn.Embedding(vocab, d),
            "encoder": torch.nn.TransformerEncoder(layer, 10, enable_nested_tensor=False),
            "head": torch.nn.Linear(d, 10),
        }
    ).to(device)
    del layer  # the encoder holds copies
    tokens = torch.randint(0, vocab, (8, 128), device=device)
    labels = torch.randint(0, 10, (8,), device=device)

    def closure(backward: bool = True) -> torch.Tensor:
        h = model["encoder"](model["embed"](tokens))
        loss = torch.nn.functional.cross_entropy(model["head"](h.mean(1)), labels)
        if backward:
            model.zero_grad(set_to_none=True)
            loss.backward()
        return loss

    return model, closure


def make_step(row: str, model: torch.nn.Module, closure: Callable[..., torch.Tensor]) -> Callable[[], Any]:
    params = list(model.parameters())

    def sgd(p: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD(p, lr=1e-6)

    if row == "forward (no_grad)":

        def forward() -> Any:
            with torch.no_grad():
                return closure(backward=False)

        return forward
    if row == "backward + Adam":
        adam = torch.optim.Adam(params, lr=1e-5)

        def backprop() -> Any:
            loss = closure()
            adam.step()
            return loss

        return backprop
    opt: torch.optim.Optimizer = {
        "MeZO + SGD": lambda: tzb.MeZO(params, h=1e-3, seed=0, opt=sgd),
        "MeZO (opt=None)": lambda: tzb.MeZO(params, h=1e-3, seed=0),
        "SPSA + SGD": lambda: tzb.SPSA(params, h=1e-3, seed=0, opt=sgd),
        "RDSA": lambda: tzb.RDSA(params, h=1e-3, seed=0),
        "RandomizedFDM": lambda: tzb.RandomizedFDM(params, h=1e-3, seed=0),
        "GaussianSmoothing (n=4)": lambda: tzb.GaussianSmoothing(params, n_samples=4, h=1e-3, seed=0),
        "RandomGrad": lambda: tzb.RandomGrad(params, lr=1e-3, seed=0),
    }[row]()
    return lambda: opt.step(closure)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def run_row(row: str, device: str, steps: int) -> dict[str, Any]:
    """One row, in this process: memory in MB, step times in seconds."""
    model, closure = build(device)
    step = make_step(row, model, closure)
    gc.collect()
    out: dict[str, Any] = {"row": row, "device": device, "parameters": sum(p.numel() for p in model.parameters())}
    if device == "cpu":
        out["built_mb"] = _status_kb("VmRSS") / 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            out["peak_reset"] = True
        except OSError:
            out["peak_reset"] = False
    else:
        torch.cuda.synchronize()
        out["built_mb"] = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    times, forwards = [], []
    for k in range(steps + 1):
        t = _timed(step, device)
        if k:  # the first step is untimed (lazy allocations, warm caches)
            times.append(t)
            # a no_grad forward right after each step, in the same process: a ratio that load
            # changes between processes do not move
            forwards.append(_timed(lambda: _forward(closure), device))
    out["peak_mb"] = _status_kb("VmHWM") / 1024 if device == "cpu" else torch.cuda.max_memory_allocated() / 2**20
    out["step_s"] = statistics.median(times)
    out["paired_forward_s"] = statistics.median(forwards)
    return out


def _forward(closure: Callable[..., torch.Tensor]) -> Any:
    with torch.no_grad():
        return closure(backward=False)


def _timed(fn: Callable[[], Any], device: str) -> float:
    t = time.perf_counter()
    fn()
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="times every row runs (side by side)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row (after one untimed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per row")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.row:
        print(json.dumps(run_row(args.row, args.device, args.steps)))
        return
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "platform": platform.platform(),
        },
        "command": "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:]),
        "rounds": [],
    }
    for device in devices:
        for r in range(args.rounds):
            measured = {}
            for row in ROWS:
                cmd = [sys.executable, __file__, "--row", row, "--device", device, "--steps", str(args.steps)]
                cmd += ["--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                measured[row] = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"  [{device} round {r + 1}] {row}: {measured[row]}", file=sys.stderr, flush=True)
            results["rounds"].append({"device": device, "rows": measured})
        results[device] = summarize([rd["rows"] for rd in results["rounds"] if rd["device"] == device])
        print(table(device, results[device], args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {RESULTS / 'memory.json'}")


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per row: medians over the rounds of the memory figures and of the within-round ratios."""
    out: dict[str, dict[str, float]] = {}
    for row in ROWS:
        per = []
        for rd in rounds:
            m, f = rd[row], rd[ROWS[0]]
            extra, f_extra = m["peak_mb"] - m["built_mb"], f["peak_mb"] - f["built_mb"]
            per.append(
                {
                    "built_mb": m["built_mb"],
                    "peak_mb": m["peak_mb"],
                    "extra_mb": extra,
                    "extra_x_forward": extra / f_extra,
                    "peak_x_forward": m["peak_mb"] / f["peak_mb"],
                    "step_s": m["step_s"],
                    "time_x_forward": m["step_s"] / f["step_s"],
                    "time_x_paired_forward": m["step_s"] / m["paired_forward_s"],
                }
            )
        out[row] = {k: statistics.median(p[k] for p in per) for k in per[0]}
        for key in ("time_x_forward", "time_x_paired_forward"):
            ratios = [p[key] for p in per]
            out[row][key + "_range"] = [min(ratios), max(ratios)]
    return out


def table(device: str, summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    what = "RSS" if device == "cpu" else "torch.cuda.max_memory_allocated"
    lines = [
        f"\n### {device}: peak {what}, {args.rounds} round(s) × {args.steps} timed step(s), {args.threads} thread(s)\n",
        "| step | built model MB | peak MB | extra peak MB | extra × forward | total peak × forward "
        "| step s | step time × forward row (range) | × forward in the same process (range) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row, s in summary.items():
        lo, hi = s["time_x_forward_range"]
        plo, phi = s["time_x_paired_forward_range"]
        lines.append(
            f"| {row} | {s['built_mb']:.0f} | {s['peak_mb']:.0f} | {s['extra_mb']:.0f} | {s['extra_x_forward']:.2f} "
            f"| {s['peak_x_forward']:.3f} | {s['step_s']:.2f} | {s['time_x_forward']:.2f} ({lo:.2f}–{hi:.2f}) "
            f"| {s['time_x_paired_forward']:.2f} ({plo:.2f}–{phi:.2f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
