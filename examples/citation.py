"""Train a GGNN with recurrent back-propagation on a citation graph.

    python examples/citation.py --method neumann
    python examples/citation.py --dataset CiteSeer --method cg --plot plots/
    python examples/citation.py --split paper --seed 3 --output-json run.json
    python examples/citation.py --loader neighbor --devices 2 --strategy ddp \
        --accelerator cpu
    python examples/citation.py --dataset ogbn-arxiv --loader neighbor

The model: input dropout, a linear encoder with ReLU, RBPGatedGraphConv
(symmetric-normalised messages, the input fed to the GRU at every step),
dropout, a linear classifier and two smoothing steps of the logits over the
graph; cross-entropy on the training nodes plus a Jacobian penalty that
keeps the propagation contractive, Adam with weight decay; the
best-validation checkpoint is tested at the end.

Data: ``--data-root DIR`` (or ``$PYG_RBP_DATA_ROOT``) holding
``Planetoid/<Name>/raw/`` or ``ogb/ogbn_arxiv/``; without it, PyG downloads
into ``~/.cache/pyg_rbp``.
"""
from __future__ import annotations

import sys
from typing import List, Optional

from pyg_rbp.lightning import TrainConfig, train_node_classifier
from pyg_rbp.lightning.config import print_rows, run_example
from pyg_rbp.utils.cli import share


DESCRIPTION = "GGNN + RBP node classification (Lightning)."


def print_table(r: dict) -> None:
    mem = r["peak_memory_bytes"] / 2**20
    saved = r["peak_saved_bytes"] / 2**20
    steps = r["mean_forward_steps"]
    rows = [("dataset", r["dataset"]), ("method", r["method"]),
            ("split / seed", f"{r['config']['split']} / {r['seed']}"),
            ("best val acc", f"{r['val_acc']:.4f}"),
            ("test acc (best val)", f"{r['test_acc']:.4f}"),
            ("epochs", str(r["epochs"])),
            ("wall time", f"{r['wall_s']:.1f} s"),
            ("peak memory", f"{mem:.0f} MiB"),
            ("autograd-saved / step", f"{saved:.1f} MiB"),
            ("mean forward steps", "-" if steps is None else f"{steps:.1f}"),
            ("forward converged", share(r.get("forward_converged"))),
            ("adjoint solved", share(r.get("adjoint_solved")))]
    print_rows(rows)


def main(argv: Optional[List[str]] = None) -> int:
    return run_example(TrainConfig, train_node_classifier, print_table, argv,
                       DESCRIPTION)


if __name__ == "__main__":
    sys.exit(main())
