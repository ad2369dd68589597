"""GGNN's bAbI tasks (Li et al., 2016) with a recurrent GGNN trained by RBP.

    python examples/babi.py --task 4 --method neumann --fold 1 2 3
    python examples/babi.py --task 16 --method neumann --hidden 8 \
        --fold 1 2 3 4 5 6 7 8 9 10 --output-json results/babi16.json
    python examples/babi.py --task 19 --train-examples 250 --fold 1
    python examples/babi.py --task 18 --method bptt --fold 1 --plot plots/

The protocol of the paper: one model per question type, trained on the first
``--train-examples`` questions of that type in the fold's training file;
the next 50 are the validation set; the test figure is on the fold's test
file, at the epoch with the best validation accuracy. Output models: node
selection (tasks 4, 15, 16), the gated-sum graph readout (18), two readouts
for the two directions of a path (19). The layer keeps its own defaults
unless a flag sets them (``--num-layers``, ``--backward-steps``,
``--solver``, ``--tol``). See docs/babi.md.

Data: ``--data-root DIR`` (or ``$PYG_RBP_DATA_ROOT``) holding
``bAbI/processed_<fold>/{train,test}/``; without it, the files are fetched
into ``~/.cache/pyg_rbp``.
"""
from __future__ import annotations

import sys
from typing import List, Optional

from pyg_rbp.lightning import BabiTrainConfig, train_babi
from pyg_rbp.lightning.config import print_rows, run_example
from pyg_rbp.utils.cli import number


DESCRIPTION = "GGNN + RBP on GGNN's symbolic bAbI tasks (Lightning)."


def print_table(r: dict) -> None:
    print()
    print("| fold | question type | test acc (best val) | best epoch "
          "| forward steps | backward steps |")
    print("|---|---|---|---|---|---|")
    for run in r["runs"]:
        print(f"| {run['fold']} | {run['question_type']} "
              f"| {100 * run['test_acc']:.1f} % | {run['best_epoch']} "
              f"| {number(run['forward_steps'])} "
              f"| {number(run['backward_steps'])} |")
    rows = [("task", str(r["task"])),
            ("method", r["method"]),
            ("runs (fold x question type)", str(len(r["runs"]))),
            ("test acc (val-selected)",
             f"{100 * r['test_acc']:.1f} ± {100 * r['test_acc_std']:.1f} %"),
            ("val acc (last epoch)", f"{100 * r['final_val_acc']:.1f} %"),
            ("forward steps / call", number(r["forward_steps"])),
            ("backward steps / call", number(r["backward_steps"])),
            ("wall time", f"{r['wall_s']:.0f} s")]
    print_rows(rows)


def main(argv: Optional[List[str]] = None) -> int:
    return run_example(BabiTrainConfig, train_babi, print_table, argv,
                       DESCRIPTION)


if __name__ == "__main__":
    sys.exit(main())
