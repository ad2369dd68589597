"""Accuracy of every gradient method on the Planetoid graphs, over seeds.

Trains the model of ``examples/citation.py`` (same defaults) once per
(dataset, method, seed), sequentially, and writes one JSON record per run
plus a markdown table of mean +- std test accuracy (at the best-validation
epoch), autograd-saved memory per step and time per run.

    python benchmarks/citation_accuracy.py --data-root ../shared/data \
        --output-json benchmarks/results/citation_public.json
    python benchmarks/citation_accuracy.py --split paper --seeds 10 ...

PubMed is skipped, with a note, when its files are missing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path
from typing import Dict, List

import torch

from pyg_rbp import METHODS, ConvergenceWarning
from pyg_rbp.data import PLANETOID, DatasetNotFoundError, load_node_dataset
from pyg_rbp.lightning import TrainConfig, train_node_classifier


def summarise(records: List[Dict]) -> str:
    """Markdown table: one row per (dataset, method)."""
    lines = ["| dataset | method | test acc (mean ± std) | best val acc | "
             "runs | saved MiB / step | s / run | mean fwd steps |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["method"]) for r in records},
                  key=lambda k: (PLANETOID.index(k[0]), METHODS.index(k[1])))
    for dataset, method in keys:
        rs = [r for r in records
              if r["dataset"] == dataset and r["method"] == method]
        acc = [100 * r["test_acc"] for r in rs]
        val = [100 * r["val_acc"] for r in rs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        saved = statistics.mean(r["peak_saved_bytes"] for r in rs) / 2**20
        wall = statistics.mean(r["wall_s"] for r in rs)
        steps = statistics.mean(r["mean_forward_steps"] for r in rs)
        lines.append(f"| {dataset} | {method} | {statistics.mean(acc):.1f} ± "
                     f"{std:.1f} | {statistics.mean(val):.1f} | {len(rs)} | "
                     f"{saved:.1f} | {wall:.0f} | {steps:.1f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--datasets", nargs="+", default=list(PLANETOID),
                   choices=PLANETOID)
    p.add_argument("--methods", nargs="+", default=list(METHODS),
                   choices=METHODS)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--split", default="public", choices=("public", "paper"))
    # the example's own defaults, so that the table is the example's model
    d = TrainConfig()
    p.add_argument("--max-epochs", type=int, default=d.max_epochs)
    p.add_argument("--num-layers", type=int, default=d.num_layers)
    p.add_argument("--backward-steps", type=int, default=d.backward_steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--gradient-clip", type=float, default=d.gradient_clip,
                   help="clip the gradient norm (0: no clip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--accelerator", default="auto",
                   help="cpu, gpu or auto (Lightning's)")
    p.add_argument("--output-json", required=True)
    p.add_argument("--output-dir", default="outputs/benchmark")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    out = Path(a.output_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    records: List[Dict] = json.loads(out.read_text()) if out.exists() else []
    done = {(r["dataset"], r["method"], r["seed"]) for r in records}
    for dataset in a.datasets:
        try:
            load_node_dataset(dataset, a.data_root, download=False)
        except DatasetNotFoundError as exc:
            print(f"skipping {dataset}: {exc}", file=sys.stderr)
            continue
        for method in a.methods:
            for seed in range(a.seeds):
                if (dataset, method, seed) in done:
                    continue  # resumable: keeps what an earlier run wrote
                r = train_node_classifier(TrainConfig(
                    dataset=dataset, method=method, seed=seed,
                    split=a.split, max_epochs=a.max_epochs, lr=a.lr,
                    num_layers=a.num_layers, backward_steps=a.backward_steps,
                    gradient_clip=a.gradient_clip or None,
                    data_root=a.data_root, accelerator=a.accelerator,
                    progress_bar=False, output_dir=a.output_dir,
                    download=False))
                for key in ("history", "residual_trace_first",
                            "residual_trace_final", "config"):
                    r.pop(key)
                records.append(r)
                out.write_text(json.dumps(records, indent=1))
                print(f"{dataset:9} {method:12} seed {seed}: test "
                      f"{r['test_acc']:.4f} val {r['val_acc']:.4f} "
                      f"({r['wall_s']:.0f} s)", flush=True)
    print(summarise(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
