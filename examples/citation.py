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

import argparse
import sys
from typing import List, Optional

from pyg_rbp import METHODS
from pyg_rbp.data import DATASETS, SPLITS
from pyg_rbp.lightning import LOADERS, TrainConfig, train_node_classifier
from pyg_rbp.lightning.cli import (add_common_arguments, common_options,
                                  print_rows, run_example)


def parse_args(argv: Optional[List[str]] = None) -> TrainConfig:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        description="GGNN + RBP node classification (Lightning).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS)
    add_common_arguments(p, d, METHODS)
    p.add_argument("--split", default=d.split, choices=SPLITS,
                   help="public split, or the paper's random 1/49/50 split")
    p.add_argument("--loader", default=d.loader, choices=LOADERS)
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="seed nodes per batch with --loader neighbor")
    p.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue training from this checkpoint")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--input-dropout", type=float, default=d.input_dropout)
    p.add_argument("--out-propagation", type=int, default=d.out_propagation,
                   help="smoothing steps on the logits (0: none)")
    a = p.parse_args(argv)
    return TrainConfig(
        dataset=a.dataset, split=a.split, loader=a.loader,
        batch_size=a.batch_size, resume=a.resume, dropout=a.dropout,
        input_dropout=a.input_dropout, out_propagation=a.out_propagation,
        **common_options(a))


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
            ("mean forward steps", "-" if steps is None else f"{steps:.1f}")]
    print_rows(rows)


def main(argv: Optional[List[str]] = None) -> int:
    return run_example(parse_args, train_node_classifier, print_table, argv)


if __name__ == "__main__":
    sys.exit(main())
