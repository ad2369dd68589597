"""Command-line flags the Lightning examples share (node and graph
classification), so that the same flag means the same thing in both."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..data import DatasetNotFoundError
from ..implicit import SOLVERS, ConvergenceWarning

#: Lightning's ``Trainer(precision=...)`` values the examples accept.
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true", "64")

_COMMON = ("method", "num_layers", "backward_steps", "hidden", "max_epochs",
           "seed", "accelerator", "devices", "strategy", "precision",
           "data_root", "plot", "output_json", "output_dir", "lr",
           "weight_decay", "jacobian_weight", "tol", "solver",
           "progress_bar")


def add_common_arguments(p: argparse.ArgumentParser, defaults: Any,
                         methods: Sequence[str]) -> None:
    """Add the shared flags to ``p``, with defaults from the config
    dataclass instance ``defaults``."""
    d = defaults
    p.add_argument("--method", default=d.method, choices=methods)
    p.add_argument("--num-layers", type=int, default=d.num_layers,
                   help="most propagation steps T")
    p.add_argument("--backward-steps", type=int, default=d.backward_steps,
                   help="K: Neumann terms / CG or fixed-point iterations / "
                        "TBPTT truncation")
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--max-epochs", type=int, default=d.max_epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--accelerator", default=d.accelerator,
                   help="cpu, gpu or auto")
    p.add_argument("--devices", type=int, default=d.devices)
    p.add_argument("--strategy", default=d.strategy,
                   help="auto, ddp, ddp_spawn, ...")
    p.add_argument("--precision", default=d.precision, choices=PRECISIONS,
                   help="Lightning's Trainer precision (unset: 32-true)")
    p.add_argument("--data-root", default=d.data_root,
                   help="data folder (Planetoid/, TUDataset/, ogb/ below "
                        "it); default $PYG_RBP_DATA_ROOT, then "
                        "~/.cache/pyg_rbp")
    p.add_argument("--plot", default=d.plot, metavar="DIR",
                   help="write PNG figures of the run here")
    p.add_argument("--output-json", default=d.output_json, metavar="PATH")
    p.add_argument("--output-dir", default=d.output_dir,
                   help="checkpoints and CSV logs")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--jacobian-weight", type=float, default=d.jacobian_weight,
                   help="weight of the sigma_max(J)^2 penalty that keeps the "
                        "propagation contractive (0: off)")
    p.add_argument("--tol", type=float, default=d.tol)
    p.add_argument("--solver", default=d.solver, choices=SOLVERS)
    p.add_argument("--progress-bar", default=d.progress_bar,
                   action=argparse.BooleanOptionalAction)
    p.add_argument("--offline", action="store_true",
                   help="never try to download missing files")


def common_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The config fields the shared flags set, from parsed ``args``."""
    out = {name: getattr(args, name) for name in _COMMON}
    out["download"] = not args.offline
    return out


def print_rows(rows: Sequence[Tuple[str, str]]) -> None:
    """The examples' closing summary: a two-column Markdown-style table."""
    width = max(len(k) for k, _ in rows)
    value_width = max([14] + [len(v) for _, v in rows])
    print()
    for key, value in rows:
        print(f"| {key:<{width}} | {value:>{value_width}} |")


def run_example(parse: Callable[[Optional[List[str]]], Any],
                train: Callable[[Any], Dict[str, Any]],
                report: Callable[[Dict[str, Any]], None],
                argv: Optional[List[str]] = None) -> int:
    """An example's ``main``: parse and check the options, train, report.

    Bad options and missing data end with one ``error:`` line on stderr and
    exit status 2; the report is printed by the global-zero process only.
    """
    try:
        cfg = parse(argv)
        cfg.check()
    except (ValueError, ModuleNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # One warning per place is plenty in a training loop.
    warnings.simplefilter("once", ConvergenceWarning)
    try:
        result = train(cfg)
    except DatasetNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result["is_global_zero"]:
        report(result)
    return 0
