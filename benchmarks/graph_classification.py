"""10-fold graph classification, every contender side by side.

Runs ``examples/graph_classification.py`` once per (dataset, contender, fold),
each in its own process, keeps each fold's JSON (a fold whose JSON exists is
reused, with a message, so the sweep resumes; ``--rerun`` runs it again),
joins the folds into one report per (dataset, contender), and prints the
table of docs/graph_classification.md. New runs go to
``outputs/benchmarks/graph_classification`` unless ``--results`` names a
folder:

    python -m benchmarks.graph_classification --datasets MUTAG
    python -m benchmarks.graph_classification --datasets PROTEINS NCI1 \
        --contenders neumann bptt pyg --epochs 50
    python -m benchmarks.graph_classification --datasets NCI1 --contenders \
        neumann --results outputs/errica -- --splits errica  # Errica's folds

Contenders: ``neumann`` and ``bptt`` (our layer, typed edges where the data
has them), ``pyg`` (PyG's GatedGraphConv, ``--pyg-layers`` untied steps,
same encoder, readout and head), and on request ``untyped`` (neumann without
edge types) and ``batch-wide`` (neumann, one stopping test for the whole
mini-batch).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from pyg_rbp.utils import write_json
from pyg_rbp.utils.cli import Table, number

from benchmarks import harness

CONTENDERS: Dict[str, List[str]] = {
    "hybrid": ["--method", "hybrid"],
    "neumann": ["--method", "neumann"],
    "bptt": ["--method", "bptt"],
    "pyg": ["--conv", "pyg", "--method", "bptt"],
    "none": ["--conv", "none", "--method", "bptt"],
    "untyped": ["--method", "neumann", "--no-edge-types"],
    "batch-wide": ["--method", "neumann", "--batch-wide-stopping"],
}


def run(dataset: str, contender: str, a: argparse.Namespace) -> Path:
    """Train the contender fold by fold, each fold in its own process with
    its own JSON under ``parts/`` (a fold whose JSON exists is reused, so
    an interrupted sweep resumes at the fold it was in), then join the
    folds into ``<dataset>_<contender>.json``."""
    out = Path(a.results) / f"{dataset}_{contender}.json"
    if harness.reuse(out, a.rerun):
        return out
    parts = Path(a.results) / "parts" / f"{dataset}_{contender}"
    parts.mkdir(parents=True, exist_ok=True)
    fold_paths = []
    for fold in range(a.folds):
        fold_out = parts / f"fold{fold}.json"
        fold_paths.append(fold_out)
        if harness.reuse(fold_out, a.rerun):
            continue
        args = [sys.executable,
                str(harness.ROOT / "examples" / "graph_classification.py"),
                "--dataset", dataset, "--folds", str(a.folds), "--fold",
                str(fold), "--max-epochs", str(a.max_epochs), "--seed",
                str(a.seed), "--output-json", str(fold_out),
                "--output-dir", str(Path(a.results) / "logs"),
                *CONTENDERS[contender]]
        if contender == "pyg":
            args += ["--num-layers", str(a.pyg_layers)]
        if a.data_root:
            args += ["--data-root", a.data_root]
        args += a.extra
        print("running:", " ".join(args[1:]), flush=True)
        subprocess.run(args, check=True, env=dict(
            os.environ, OMP_NUM_THREADS=str(a.threads),
            PYTHONWARNINGS="ignore"))
    write_json(out, join_folds(fold_paths))
    return out


def join_folds(paths: List[Path]) -> Dict:
    """One report from per-fold reports (``summarise_folds``), as if the
    folds had run in one process."""
    from pyg_rbp.lightning.graph_run import GraphTrainConfig, summarise_folds
    reports = [json.loads(p.read_text()) for p in paths]
    known = set(GraphTrainConfig.__dataclass_fields__)
    config = {k: v for k, v in reports[0]["config"].items() if k in known}
    config["fold"] = None
    cfg = GraphTrainConfig(**config)
    folds = [f for r in reports for f in r["folds"]]
    return summarise_folds(cfg, folds, reports[0]["conv"],
                           sum(r["wall_s"] for r in reports))


def table(paths: List[Path]) -> str:
    out = Table("dataset", "contender", "test acc (val-selected)",
                "GIN-style (optimistic)", "best test/fold (optimistic)",
                "steps / graph", "steps / batch", "s / epoch", "wall s")
    for path in paths:
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        opt = r["optimistic"]
        gin = opt["gin_style_one_epoch_for_all_folds_chosen_on_test"]
        ignn = opt["ignn_style_each_folds_best_test_epoch"]
        # PyG's layer runs a fixed number of untied steps: no stopping
        stops = r["forward_steps_per_graph"] > 0
        graph, batch = (number(r[f"forward_steps_per_{k}"]) if stops
                        else "fixed" for k in ("graph", "batch"))
        out.add(r["dataset"], path.stem.split("_", 1)[1],
                f"{100 * r['test_acc']:.1f} ± {100 * r['test_acc_std']:.1f}",
                number(gin["test_acc"], scale=100),
                number(ignn["test_acc"], scale=100), graph, batch,
                number(r["epoch_s"], ".2f"), number(r["wall_s"], ".0f"))
    return str(out)


def main() -> int:
    p = harness.parser(__doc__, threads=2, output="results",
                       name="graph_classification")
    p.add_argument("--datasets", nargs="+", default=["MUTAG"])
    p.add_argument("--contenders", nargs="+", default=["neumann", "bptt",
                                                       "pyg"],
                   choices=list(CONTENDERS))
    p.add_argument("--max-epochs", "--epochs", type=int, default=100)
    p.add_argument("--folds", type=int, default=10,
                   help="the k of k-fold (--fold of the example: which)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pyg-layers", type=int, default=8,
                   help="GatedGraphConv steps (ours converge in ~7)")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after --: more flags for the example")
    a = p.parse_args()
    a.extra = [x for x in a.extra if x != "--"]
    paths = []
    for dataset in a.datasets:
        for contender in a.contenders:
            path = Path(a.results) / f"{dataset}_{contender}.json"
            if not a.table_only:
                path = run(dataset, contender, a)
            paths.append(path)
    print(table(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
