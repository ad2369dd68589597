"""Accuracy of every gradient method on the Planetoid graphs, over seeds.

Trains the model of ``examples/citation.py`` (same defaults) once per
(dataset, method, seed), sequentially, and writes one JSON record per run
plus a markdown table of mean +- std test accuracy (at the best-validation
epoch), autograd-saved memory per step and time per run. The runs resume:
those already in ``--output-json`` are reused, with a message (``--rerun``
runs them again); the default file is under ``outputs/benchmarks/``.

    python -m benchmarks.citation_accuracy --output-json outputs/public.json
    python -m benchmarks.citation_accuracy --split paper --seeds 10 ...
    python -m benchmarks.citation_accuracy --methods hybrid \
        --baselines pyg-gcn pyg-appnp pyg-gated ...   # the anchors beside us

``--baselines`` trains, in the same run and on the same data and seeds, the
layers a PyG user would otherwise pick (``benchmarks/baselines.py``: GCN and
APPNP as PyG's examples train them, and PyG's GatedGraphConv in our model).
``--cell gru`` (with ``--jacobian-weight 1 --out-propagation 2
--num-layers 30``) reproduces the defaults before 0.2. PubMed is skipped,
with a note, when its files are missing.
"""
from __future__ import annotations

import statistics
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional

from pyg_rbp import METHODS, ConvergenceWarning
from pyg_rbp.data import PLANETOID, DatasetNotFoundError, load_node_dataset
from pyg_rbp.lightning import TrainConfig, train_node_classifier
from pyg_rbp.nn.gated_graph_conv import CELLS
from pyg_rbp.utils import write_json
from pyg_rbp.utils.cli import Table, number, share

from benchmarks import harness
from benchmarks.baselines import CITATION_BASELINES, train_citation_baseline

#: Row order: our methods, then the baselines.
ORDER = tuple(METHODS) + tuple(CITATION_BASELINES)


def summarise(records: List[Dict]) -> str:
    """Markdown table: one row per (dataset, method)."""
    table = Table("dataset", "method", "test acc (mean ± std)", "min",
                  "best val acc", "runs", "fwd converged", "unrolled",
                  "saved MiB / step (peak)", "s / run", "mean fwd steps")
    keys = sorted({(r["dataset"], r["method"], r.get("cell", "-"),
                    r.get("features", "normalized")) for r in records},
                  key=lambda k: (PLANETOID.index(k[0]), k[2],
                                 ORDER.index(k[1]), k[3]))

    def mean(rs: List[Dict], key: str) -> Optional[float]:
        values = [r[key] for r in rs if r.get(key) is not None]
        return statistics.mean(values) if values else None
    for dataset, method, cell, features in keys:
        rs = [r for r in records if r["dataset"] == dataset and
              r["method"] == method and r.get("cell", "-") == cell and
              r.get("features", "normalized") == features]
        acc = [100 * r["test_acc"] for r in rs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        saved = None if "peak_saved_bytes" not in rs[0] else \
            max(r["peak_saved_bytes"] for r in rs) / 2**20
        name = method if cell == "-" else f"{method} ({cell})"
        table.add(dataset, f"{name}, {features} features",
                  f"{statistics.mean(acc):.1f} ± {std:.1f}",
                  f"{min(acc):.1f}", number(mean(rs, "val_acc"), scale=100),
                  len(rs), share(mean(rs, "forward_converged")),
                  share(mean(rs, "unrolled")), number(saved),
                  number(mean(rs, "wall_s"), ".0f"),
                  number(mean(rs, "mean_forward_steps")))
    return str(table)


def main() -> int:
    p = harness.parser(__doc__, threads=2, output="records",
                       name="citation_accuracy")
    p.add_argument("--datasets", nargs="+", default=list(PLANETOID),
                   choices=PLANETOID)
    p.add_argument("--methods", nargs="*", default=list(METHODS),
                   choices=METHODS, help="our gradient methods (none: only "
                                         "the baselines)")
    p.add_argument("--baselines", nargs="*", default=[],
                   choices=tuple(CITATION_BASELINES),
                   help="PyG's layers, trained beside ours on the same data")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--split", default="public", choices=("public", "paper"))
    # the example's own defaults, so that the table is the example's model
    d = TrainConfig()
    p.add_argument("--max-epochs", type=int, default=d.max_epochs)
    p.add_argument("--num-layers", type=int, default=d.num_layers)
    p.add_argument("--backward-steps", type=int, default=d.backward_steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--cell", default=None, choices=CELLS,
                   help="the layer's step (default: the layer's)")
    p.add_argument("--carry", type=float, default=None)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--output-dropout", type=float, default=d.output_dropout)
    p.add_argument("--input-dropout", type=float, default=d.input_dropout)
    p.add_argument("--out-propagation", type=int, default=d.out_propagation)
    p.add_argument("--jacobian-weight", type=float, default=None)
    p.add_argument("--normalize-features", action="store_true",
                   help="row-normalised features for our layer (the "
                        "baselines take --baseline-features)")
    p.add_argument("--baseline-features", default="normalized",
                   choices=("normalized", "raw"),
                   help="the baselines' features: row-normalised, as "
                        "PyG's GCN and APPNP examples have them, or raw")
    p.add_argument("--gradient-clip", type=float, default=d.gradient_clip,
                   help="clip the gradient norm (0: no clip)")
    p.add_argument("--accelerator", default="auto",
                   help="cpu, gpu or auto (Lightning's)")
    p.add_argument("--output-dir", default="outputs/benchmark")
    a = p.parse_args()
    harness.start(a.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    out = Path(a.output_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    records: List[Dict] = harness.stored_records(out, a.rerun)
    done = {(r["dataset"], r["method"], r["seed"], r.get("features"))
            for r in records}
    cell = a.cell or "contractive"
    ours_features = "normalized" if a.normalize_features else "raw"
    for dataset in a.datasets:
        try:
            load_node_dataset(dataset, a.data_root, download=False)
        except DatasetNotFoundError as exc:
            print(f"skipping {dataset}: {exc}", file=sys.stderr)
            continue
        for method in a.methods:
            for seed in range(a.seeds):
                if (dataset, method, seed, ours_features) in done:
                    continue  # resumable: keeps what an earlier run wrote
                r = train_node_classifier(TrainConfig(
                    dataset=dataset, method=method, seed=seed,
                    split=a.split, max_epochs=a.max_epochs, lr=a.lr,
                    num_layers=a.num_layers, backward_steps=a.backward_steps,
                    cell=a.cell, carry=a.carry, dropout=a.dropout,
                    output_dropout=a.output_dropout,
                    input_dropout=a.input_dropout,
                    out_propagation=a.out_propagation,
                    jacobian_weight=a.jacobian_weight,
                    normalize_features=a.normalize_features,
                    gradient_clip=a.gradient_clip or None,
                    data_root=a.data_root, accelerator=a.accelerator,
                    progress_bar=False, output_dir=a.output_dir,
                    download=False))
                # the checkpoint's path is this machine's and temporary
                for key in ("history", "residual_trace_first",
                            "residual_trace_final", "config",
                            "best_checkpoint"):
                    r.pop(key, None)
                r["cell"] = cell
                r["features"] = ours_features
                records.append(r)
                write_json(out, records)
                print(f"{dataset:9} {method:12} seed {seed}: test "
                      f"{r['test_acc']:.4f} val {r['val_acc']:.4f} "
                      f"({r['wall_s']:.0f} s)", flush=True)
        normalized = a.baseline_features == "normalized"
        data = load_node_dataset(dataset, a.data_root, split=a.split,
                                 download=False,
                                 normalize_features=normalized) \
            if a.baselines else None
        for name in a.baselines:
            for seed in range(a.seeds):
                if (dataset, name, seed, a.baseline_features) in done:
                    continue
                if a.split == "paper":  # each seed draws its own split
                    data = load_node_dataset(dataset, a.data_root,
                                             split=a.split, seed=seed,
                                             download=False,
                                             normalize_features=normalized)
                r = {"dataset": dataset, "method": name, "seed": seed,
                     "features": a.baseline_features,
                     **train_citation_baseline(
                         name, data, seed, a.input_dropout, a.dropout,
                         lr=a.lr)}
                records.append(r)
                write_json(out, records)
                print(f"{dataset:9} {name:12} seed {seed}: test "
                      f"{r['test_acc']:.4f} val {r['val_acc']:.4f} "
                      f"({r['wall_s']:.0f} s)", flush=True)
    print(summarise(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
