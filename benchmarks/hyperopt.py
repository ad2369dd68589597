"""One meta-step of the hyperparameter experiment: time and memory of BPTT,
TBPTT and Neumann-RBP at truncation 10, 50 and 100, side by side.

The paper's table (BPTT / Neumann-RBP, 100 inner steps): run time x3.02 /
x2.87 / x2.68 and memory x4.35 / x4.25 / x4.11 at truncation 10 / 50 / 100.
Every contender computes the hypergradient of the same meta-step (same
initial weights, same mini-batches), interleaved over ``--repeats`` rounds
in one process on one thread; time is the median, memory the most bytes
autograd held for the backward pass at once (``SavedTensorMeter.peak_bytes``).

    python -m benchmarks.hyperopt
    python -m benchmarks.hyperopt --final-batch mini --inner-steps 1500 \\
        --truncations 50

Prints the table of docs/hyperopt.md and writes ``--output-json`` (default
outputs/benchmarks/hyperopt_cost.json; the committed one is in
benchmarks/results/).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Dict, List, Optional

import torch

from pyg_rbp.data.mnist import load_mnist
from pyg_rbp.hyperopt import (HyperoptConfig, batch_schedule, hypergradient,
                              init_mlp, split_mnist)
from pyg_rbp.utils import SavedTensorMeter, write_json
from pyg_rbp.utils.cli import Table

from benchmarks import harness

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
            with SavedTensorMeter(track_peak=True) as meter:
                _, seconds = harness.timed(lambda: hypergradient(
                    cfg, cfg.gradient(), hyper, init, batches, x, y))
            times[f"{method}@{k}"].append(seconds)
            memory[f"{method}@{k}"] = meter.peak_bytes
    return {key: {"seconds": statistics.median(ts), "all_seconds": ts,
                  "saved_bytes": memory[key]} for key, ts in times.items()}


def table(results: Dict[str, dict], inner_steps: int,
          truncations: List[int]) -> str:
    bptt = results[f"bptt@{inner_steps}"]
    out = Table("truncation K", "BPTT s", "TBPTT s", "Neumann s",
                "BPTT / Neumann time (paper)", "BPTT MiB", "TBPTT MiB",
                "Neumann MiB", "BPTT / Neumann memory (paper)")
    nan = float("nan")
    for k in truncations:
        runs = bptt, results[f"tbptt@{k}"], results[f"neumann@{k}"]
        seconds = [r["seconds"] for r in runs]
        mib = [r["saved_bytes"] / 2**20 for r in runs]
        out.add(k, *(f"{v:.2f}" for v in seconds),
                f"x{seconds[0] / seconds[2]:.2f} "
                f"(x{PAPER_TIME.get(k, nan):.2f})",
                *(f"{v:.0f}" for v in mib),
                f"x{mib[0] / mib[2]:.2f} (x{PAPER_MEMORY.get(k, nan):.2f})")
    return str(out)


def main(argv: Optional[List[str]] = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--truncations", type=int, nargs="+",
                   default=[10, 50, 100])
    p.add_argument("--inner-steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--train", type=int, default=5000)
    p.add_argument("--final-batch", default="full", choices=("full", "mini"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args(argv)
    harness.start(a.threads)
    results = measure(a)
    write_json(a.output_json or harness.RUNS / "hyperopt_cost.json",
               {"args": vars(a), "results": results})
    print(table(results, a.inner_steps, a.truncations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
