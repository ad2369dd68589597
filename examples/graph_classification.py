"""Graph classification on TU datasets with a GGNN trained by RBP.

    python examples/graph_classification.py --dataset MUTAG --method neumann
    python examples/graph_classification.py --dataset PROTEINS --folds 10 \
        --output-json results/proteins.json --plot plots/
    python examples/graph_classification.py --dataset MUTAG --no-edge-types
    python examples/graph_classification.py --dataset MUTAG --conv pyg \
        --method bptt --num-layers 5          # PyG's GatedGraphConv baseline
                                              # (pyg_rbp.models.pyg_gated_factory)
    python examples/graph_classification.py --dataset NCI1 --conv none \
        --method bptt        # no propagation: the structure-agnostic reference
    python examples/graph_classification.py --dataset NCI1 --accelerator gpu
    python examples/graph_classification.py --dataset ENZYMES \
        --splits errica --node-attributes  # Errica et al.'s fixed folds

The model: a linear encoder with ReLU, RBPGatedGraphConv over the batch of
graphs (typed edges: MUTAG's 4 bond types by default; each graph of the batch
stops when it has converged), the GGNN paper's gated-sum readout over
[h*, x], and an MLP. Protocol: stratified k-fold cross-validation; in each
fold the epoch with the best validation accuracy (validation graphs from the
training side) gives the fold's test accuracy; the mean over folds is
reported. ``--splits errica``: the 10 fixed folds of "A Fair Comparison of
Graph Neural Networks for Graph Classification" (NCI1, PROTEINS, ENZYMES), the
epoch chosen on each fold's inner validation holdout. See
docs/graph_classification.md.

Data: ``--data-root DIR`` (or ``$PYG_RBP_DATA_ROOT``) holding
``TUDataset/<NAME>/raw/``; without it, PyG downloads into
``~/.cache/pyg_rbp``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from pyg_rbp.lightning import GraphTrainConfig, train_graph_classifier
from pyg_rbp.lightning.config import opt, print_rows, run_example
from pyg_rbp.models import no_graph_factory, pyg_gated_factory

DESCRIPTION = "GGNN + RBP graph classification (Lightning, k-fold)."


@dataclass
class ExampleConfig(GraphTrainConfig):
    """The library's options plus the baseline switch of this example."""

    conv: str = opt("rbp", choices=("rbp", "pyg", "none"),
                    help="rbp: our layer; pyg: PyG's GatedGraphConv (BPTT, "
                         "untied, no edge types; pyg_rbp.models.pyg_gated_factory); "
                         "none: no propagation, the structure-agnostic "
                         "reference (pyg_rbp.models.no_graph_factory)")

    def check(self) -> None:
        super().check()
        if self.conv != "rbp" and self.method != "bptt":
            what = {"pyg": "PyG's GatedGraphConv trains by BPTT only",
                    "none": "no propagation has no fixed point to "
                            "differentiate"}[self.conv]
            raise ValueError(f"--conv {self.conv}: {what}; use --method "
                             f"bptt (got --method {self.method})")


def train(cfg: ExampleConfig) -> Dict[str, Any]:
    if cfg.conv == "rbp":
        return train_graph_classifier(cfg)
    factory = no_graph_factory() if cfg.conv == "none" else \
        pyg_gated_factory(cfg.num_layers)
    return train_graph_classifier(cfg, conv_factory=factory)


def print_table(r: dict) -> None:
    opt = r["optimistic"]
    gin = opt["gin_style_one_epoch_for_all_folds_chosen_on_test"]
    ignn = opt["ignn_style_each_folds_best_test_epoch"]
    rows = [("dataset", r["dataset"]),
            ("model", f"{r['conv']} / {r['method']}"),
            ("edge types", str(r["folds"][0]["edge_types"])),
            ("folds", f"{r['folds_run']} ({r['config']['splits']})"),
            ("test acc (val-selected)",
             f"{100 * r['test_acc']:.1f} ± {100 * r['test_acc_std']:.1f} %"),
            ("optimistic: GIN-style",
             f"{100 * gin['test_acc']:.1f} ± {100 * gin['test_acc_std']:.1f} %"),
            ("optimistic: best test/fold",
             f"{100 * ignn['test_acc']:.1f} ± "
             f"{100 * ignn['test_acc_std']:.1f} %"),
            ("forward steps / graph", f"{r['forward_steps_per_graph']:.1f}"),
            ("forward steps / batch", f"{r['forward_steps_per_batch']:.1f}"),
            ("time / epoch", f"{r['epoch_s']:.2f} s"),
            ("wall time", f"{r['wall_s']:.0f} s")]
    print_rows(rows)


def main(argv: Optional[List[str]] = None) -> int:
    return run_example(ExampleConfig, train, print_table, argv,
                       DESCRIPTION)


if __name__ == "__main__":
    sys.exit(main())
