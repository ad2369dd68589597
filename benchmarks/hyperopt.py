"""One meta-step of the hyperparameter experiment: time and memory of BPTT,
TBPTT and Neumann-RBP at truncation 10, 50 and 100, side by side.

The paper's table (BPTT / Neumann-RBP, 100 inner steps): run time x3.02 /
x2.87 / x2.68 and memory x4.35 / x4.25 / x4.11 at truncation 10 / 50 / 100.
Every contender computes the hypergradient of the same meta-step (same
initial weights, same mini-batches), interleaved over ``--repeats`` rounds
in one process on one thread; time is the median, memory the most bytes
autograd held for the backward pass at once (``SavedTensorMeter.peak_bytes``).

    python benchmarks/hyperopt.py --data-root ../shared/data
    python benchmarks/hyperopt.py --final-batch mini --inner-steps 1500 \\
        --truncations 50

Writes ``--output`` (JSON, default benchmarks/results/hyperopt_cost.json)
and prints the table of docs/hyperopt.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]

from pyg_rbp.data.mnist import load_mnist  # noqa: E402
from pyg_rbp.hyperopt import (HyperoptConfig, batch_schedule,  # noqa: E402
                              hypergradient, init_mlp, split_mnist)
from pyg_rbp.utils import SavedTensorMeter, write_json  # noqa: E402

PAPER_TIME = {10: 3.02, 50: 2.87, 100: 2.68}
PAPER_MEMORY = {10: 4.35, 50: 4.25, 100: 4.11}


def measure(a: argparse.Namespace) -> Dict[str, dict]:
    images, labels = load_mnist(a.data_root)
    x, y, _, _ = split_mnist(images, labels, a.train)
    gen = torch.Generator().manual_seed(a.seed)
    init = init_mlp(HyperoptConfig().layers, gen)
    batches = batch_schedule(x.size(0), a.batch_size, a.inner_steps, gen)
    hyper = (torch.full((len(init), ), -1.0, requires_grad=True),
             torch.full((len(init), ), 0.0, requires_grad=True))
    contenders = [("bptt", a.inner_steps)] + \
        [(m, k) for k in a.truncations for m in ("tbptt", "neumann")]
    times: Dict[str, List[float]] = {f"{m}@{k}": [] for m, k in contenders}
    memory: Dict[str, int] = {}
    for _ in range(a.repeats):
        for method, k in contenders:
            cfg = HyperoptConfig(method=method, truncation=k,
                                 inner_steps=a.inner_steps,
                                 batch_size=a.batch_size,
                                 final_batch=a.final_batch)
            start = time.perf_counter()
            with SavedTensorMeter(track_peak=True) as meter:
                hypergradient(cfg, cfg.gradient(), hyper, init, batches, x,
                              y)
            times[f"{method}@{k}"].append(time.perf_counter() - start)
            memory[f"{method}@{k}"] = meter.peak_bytes
    return {key: {"seconds": statistics.median(ts), "all_seconds": ts,
                  "saved_bytes": memory[key]} for key, ts in times.items()}


def table(results: Dict[str, dict], inner_steps: int,
          truncations: List[int]) -> str:
    bptt = results[f"bptt@{inner_steps}"]
    lines = ["| truncation K | BPTT s | TBPTT s | Neumann s | BPTT / Neumann "
             "time (paper) | BPTT MiB | TBPTT MiB | Neumann MiB | BPTT / "
             "Neumann memory (paper) |", "|" + "---|" * 9]
    for k in truncations:
        t, n = results[f"tbptt@{k}"], results[f"neumann@{k}"]
        lines.append(
            f"| {k} | {bptt['seconds']:.2f} | {t['seconds']:.2f} | "
            f"{n['seconds']:.2f} | x{bptt['seconds'] / n['seconds']:.2f} "
            f"(x{PAPER_TIME.get(k, float('nan')):.2f}) | "
            f"{bptt['saved_bytes'] / 2**20:.0f} | "
            f"{t['saved_bytes'] / 2**20:.0f} | "
            f"{n['saved_bytes'] / 2**20:.0f} | "
            f"x{bptt['saved_bytes'] / n['saved_bytes']:.2f} "
            f"(x{PAPER_MEMORY.get(k, float('nan')):.2f}) |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--truncations", type=int, nargs="+",
                   default=[10, 50, 100])
    p.add_argument("--inner-steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--train", type=int, default=5000)
    p.add_argument("--final-batch", default="full", choices=("full", "mini"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default=None)
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                           "hyperopt_cost.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = measure(a)
    write_json(a.output, {"args": vars(a), "results": results})
    print(table(results, a.inner_steps, a.truncations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
