"""The bAbI protocol of Li et al. (2016), end to end: what
``examples/babi.py`` and ``benchmarks/babi.py`` call.

One model per task, fold and question type, trained full batch on the first
``train_examples`` questions of that type in the fold's training file; every
epoch is scored on the next ``val_examples`` questions (validation); the
weights of the epoch with the best validation accuracy (ties: lower
validation loss, then the earlier epoch) are scored once on the fold's test
file. Test accuracy never takes part in the choice.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch

from ..data.babi import BABI_FOLDS, BABI_TASKS
from .babi_module import BabiDataModule, BabiModule
from .base import flush_denormals
from .config import RunConfig, opt
from .report import pstd, write_report
from .trainer import EpochHistory, make_trainer, mean_of, quiet_lightning

#: ``conv_factory(hidden_channels, num_edge_types) -> module``: a layer to
#: train in place of RBPGatedGraphConv (the benchmark's PyG baseline).
ConvFactory = Callable[[int, int], torch.nn.Module]


@dataclass
class BabiTrainConfig(RunConfig):
    """Every option of a bAbI run (the shared ones in :class:`RunConfig`);
    every field is a flag of ``examples/babi.py``.

    ``num_layers``, ``backward_steps``, ``tol``, ``solver`` and
    ``backward_tol`` left at ``None`` take the layer's own defaults (the
    protocol of issue 17: per task only the hidden size and the edge types
    are set).
    """

    num_layers: Optional[int] = opt(None)
    backward_steps: Optional[int] = opt(None)
    tol: Optional[float] = opt(None)
    solver: Optional[str] = opt(None)
    backward_tol: Optional[float] = opt(None)
    hidden: int = opt(16)
    max_epochs: int = opt(300)
    weight_decay: float = opt(0.0)
    jacobian_weight: float = opt(0.0)
    progress_bar: bool = opt(False)
    task: int = opt(4, choices=BABI_TASKS, help="the bAbI task")
    folds: Sequence[int] = opt(factory=lambda: [1], choices=BABI_FOLDS,
                               metavar="F", help="folds to run (1..10)")
    question_types: Optional[Sequence[int]] = opt(
        None, minimum=1, help="question types to run (default: all)")
    train_examples: int = opt(50, minimum=1,
                              help="training questions per type")
    val_examples: int = opt(50, minimum=1,
                            help="validation questions per type (the next "
                                 "ones of the training file)")
    edge_types: bool = opt(True, help="one weight per edge type and "
                                      "direction (--no-edge-types: ignore "
                                      "them)")

    def check(self) -> None:
        """Refuse bad or incompatible options before anything starts."""
        super().check()
        if not self.folds:
            raise ValueError("--folds needs at least one fold (1..10)")


def _train_one(cfg: BabiTrainConfig, fold: int, question_type: int,
               conv_factory: Optional[ConvFactory]) -> Dict[str, Any]:
    pl.seed_everything(cfg.seed + 1000 * fold + question_type, workers=True,
                       verbose=False)
    dm = BabiDataModule(cfg.task, fold, question_type, cfg.train_examples,
                        cfg.val_examples, data_root=cfg.data_root,
                        download=cfg.download)
    info = dm.info
    types = info.num_edge_types if cfg.edge_types else 1
    classes = max(info.num_classes, 2)
    if conv_factory is not None:
        module = BabiModule(info.annotation_size, info.output, classes,
                            cfg.hidden, types, lr=cfg.lr,
                            weight_decay=cfg.weight_decay,
                            conv=conv_factory(cfg.hidden, types))
    else:
        module = BabiModule(info.annotation_size, info.output, classes,
                            cfg.hidden, types, lr=cfg.lr,
                            weight_decay=cfg.weight_decay,
                            jacobian_weight=cfg.jacobian_weight,
                            **cfg.layer_options())
    record = EpochHistory()
    run_dir = Path(cfg.output_dir) / f"babi{cfg.task}-{cfg.method}-s{cfg.seed}"
    trainer = make_trainer(cfg, run_dir, f"fold{fold}-q{question_type}",
                           [record])
    start = time.perf_counter()
    trainer.fit(module, dm)
    wall = time.perf_counter() - start
    epochs = record.epochs
    last_val = epochs[-1]["val_acc"]
    module.load_best()
    tested = trainer.test(module, dm, verbose=False)[0]

    return {
        "fold": fold, "question_type": question_type,
        "best_epoch": module.best_epoch, "val_acc": module.best_key[0],
        "val_loss": -module.best_key[1], "test_acc": float(tested["test_acc"]),
        "final_val_acc": last_val,
        "train_examples": len(dm.train), "val_examples": len(dm.val),
        "test_examples": len(dm.test), "edge_types": types,
        "wall_s": wall,
        "forward_steps": mean_of(epochs, "fwd_steps"),
        "forward_residual": mean_of(epochs, "fwd_residual"),
        "backward_steps": mean_of(epochs, "bwd_steps"),
        "backward_residual": mean_of(epochs, "bwd_residual"),
        "forward_converged": mean_of(epochs, "fwd_converged"),
        "adjoint_solved": mean_of(epochs, "bwd_converged"),
        "unrolled": mean_of(epochs, "unrolled"),
        "peak_saved_bytes": int(module.peak_saved_bytes),
        "history": epochs, "is_global_zero": trainer.is_global_zero,
    }


def train_babi(cfg: BabiTrainConfig,
               conv_factory: Optional[ConvFactory] = None) -> Dict[str, Any]:
    """Train one model per fold and question type; return (and write to
    ``cfg.output_json``) the report.

    Args:
        cfg: The run's options.
        conv_factory: Builds the propagation layer instead of
            :class:`pyg_rbp.RBPGatedGraphConv` (the layer options of ``cfg``
            are then unused); ``benchmarks/babi.py`` passes PyG's
            ``GatedGraphConv`` this way.

    Returns a dict with ``test_acc`` (mean over the folds and question types
    run of the validation-selected figure), ``test_acc_std`` (over folds, of
    each fold's mean over question types), ``runs`` (one record per fold and
    question type, with its history), ``folds`` (per-fold means),
    ``forward_steps`` / ``backward_steps`` (means over runs and epochs),
    ``wall_s`` and ``config``.
    """
    cfg.check()
    flush_denormals()
    start = time.perf_counter()
    runs: List[Dict[str, Any]] = []
    first = True
    for fold in cfg.folds:
        qtypes = cfg.question_types
        if qtypes is None:
            qtypes = BabiDataModule.question_types_of(
                cfg.task, fold, cfg.data_root, cfg.download)
        for q in qtypes:
            with quiet_lightning(not first):
                runs.append(_train_one(cfg, fold, q, conv_factory))
            first = False
    per_fold = []
    for fold in cfg.folds:
        mine = [r for r in runs if r["fold"] == fold]
        per_fold.append({"fold": fold,
                         "test_acc": statistics.mean(r["test_acc"]
                                                     for r in mine),
                         "question_types": [r["question_type"]
                                            for r in mine]})

    result: Dict[str, Any] = {
        "task": cfg.task, "method": cfg.method,
        "conv": "custom" if conv_factory is not None else "rbp",
        "protocol": "one model per fold and question type; the epoch with "
                    "the best validation accuracy (ties: lower validation "
                    "loss, earlier epoch); test never used for selection",
        "test_acc": statistics.mean(r["test_acc"] for r in runs),
        "test_acc_std": pstd([f["test_acc"] for f in per_fold]),
        "final_val_acc": statistics.mean(r["final_val_acc"] for r in runs),
        "folds": per_fold, "runs": runs,
        "forward_steps": mean_of(runs, "forward_steps"),
        "backward_steps": mean_of(runs, "backward_steps"),
        "backward_residual": mean_of(runs, "backward_residual"),
        "forward_converged": mean_of(runs, "forward_converged"),
        "adjoint_solved": mean_of(runs, "adjoint_solved"),
        "unrolled": mean_of(runs, "unrolled"),
        "peak_saved_bytes": max(r["peak_saved_bytes"] for r in runs),
        "wall_s": time.perf_counter() - start,
        "config": cfg.to_dict(),
        "is_global_zero": all(r["is_global_zero"] for r in runs),
    }
    write_report(result, cfg.output_json, cfg.plot, "plot_babi")
    return result
