"""The bAbI protocol of Li et al. (2016), end to end: what
``examples/babi.py`` and ``benchmarks.babi`` call.

One model per task, fold and question type, trained full batch on the first
``train_examples`` questions of that type in the fold's training file; every
epoch is scored on the next ``val_examples`` questions (validation); the
weights of the epoch with the best validation accuracy (ties: lower
validation loss, then the earlier epoch) are scored once on the fold's test
file. Test accuracy never takes part in the choice.
"""
from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import pytorch_lightning as pl

from ..data.babi import BABI_FOLDS, BABI_TASKS
from .babi_module import BabiDataModule, BabiModule
from .config import RunConfig, opt
from .runner import (ConvFactory, Run, Task, Trained, mean_of, pstd,
                     run)


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
    fold: Sequence[int] = opt(factory=lambda: [1], choices=BABI_FOLDS,
                              metavar="F", help="the dataset's folds to run "
                                                "(1..10)")
    folds: Optional[Sequence[int]] = opt(
        None, choices=BABI_FOLDS, metavar="F",
        help="the former name of --fold (deprecated: in graph "
             "classification --folds is the k of k-fold)")
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
        if self.folds is not None:
            warnings.warn("BabiTrainConfig's 'folds' (--folds) is now "
                          "'fold' (--fold), as in graph classification, "
                          "where --folds is the k of k-fold",
                          DeprecationWarning, stacklevel=2)
            self.fold, self.folds = list(self.folds), None
        if not self.fold:
            raise ValueError("--fold needs at least one fold (1..10)")


class BabiTask(Task):
    """bAbI: one training per fold and question type, the best-validation
    weights tested once on the fold's test file."""

    plotter = "plot_babi"

    def runs(self, cfg: BabiTrainConfig) -> Iterable[Run]:
        for fold in cfg.fold:
            qtypes = cfg.question_types
            if qtypes is None:
                qtypes = BabiDataModule.question_types_of(
                    cfg.task, fold, cfg.data_root, cfg.download)
            for q in qtypes:
                yield Run(f"fold{fold}-q{q}", cfg.seed + 1000 * fold + q,
                          {"fold": fold, "question_type": q})

    def run_dir(self, cfg: BabiTrainConfig, conv: str) -> Path:
        return Path(cfg.output_dir) / f"babi{cfg.task}-{cfg.method}" \
            f"-s{cfg.seed}"

    def build(self, cfg: BabiTrainConfig, run: Run,
              conv_factory: Optional[ConvFactory]
              ) -> Tuple[pl.LightningModule, pl.LightningDataModule]:
        dm = BabiDataModule(cfg.task, run.keys["fold"],
                            run.keys["question_type"], cfg.train_examples,
                            cfg.val_examples, data_root=cfg.data_root,
                            download=cfg.download)
        info = dm.info
        types = info.num_edge_types if cfg.edge_types else 1
        classes = max(info.num_classes, 2)
        if conv_factory is not None:
            layer: Dict[str, Any] = {"conv": conv_factory(cfg.hidden, types)}
        else:
            layer = dict(jacobian_weight=cfg.jacobian_weight,
                         **cfg.layer_options())
        module = BabiModule(info.annotation_size, info.output, classes,
                            cfg.hidden, types, lr=cfg.lr,
                            weight_decay=cfg.weight_decay, **layer)
        return module, dm

    def record(self, cfg: BabiTrainConfig, done: Trained) -> Dict[str, Any]:
        epochs, module, dm = done.history.epochs, done.module, done.dm
        last_val = epochs[-1]["val_acc"]
        module.load_best()
        tested = done.trainer.test(module, dm, verbose=False)[0]
        return {
            "fold": done.run.keys["fold"],
            "question_type": done.run.keys["question_type"],
            "best_epoch": module.best_epoch, "val_acc": module.best_key[0],
            "val_loss": -module.best_key[1],
            "test_acc": float(tested["test_acc"]),
            "final_val_acc": last_val,
            "train_examples": len(dm.train), "val_examples": len(dm.val),
            "test_examples": len(dm.test),
            "edge_types": module.model.num_edge_types,
            "forward_steps": mean_of(epochs, "fwd_steps"),
            "forward_residual": mean_of(epochs, "fwd_residual"),
            "backward_steps": mean_of(epochs, "bwd_steps"),
            "backward_residual": mean_of(epochs, "bwd_residual"),
            **done.figures(),
        }

    def summarise(self, cfg: BabiTrainConfig, records: List[Dict[str, Any]],
                  conv: str, wall: float) -> Dict[str, Any]:
        runs = records
        per_fold = []
        for fold in cfg.fold:
            mine = [r for r in runs if r["fold"] == fold]
            per_fold.append({"fold": fold,
                             "test_acc": statistics.mean(r["test_acc"]
                                                         for r in mine),
                             "question_types": [r["question_type"]
                                                for r in mine]})
        return {
            "task": cfg.task, "method": cfg.method,
            "conv": "rbp" if conv == "rbp" else "custom",
            "protocol": "one model per fold and question type; the epoch "
                        "with the best validation accuracy (ties: lower "
                        "validation loss, earlier epoch); test never used "
                        "for selection",
            "test_acc": statistics.mean(r["test_acc"] for r in runs),
            "test_acc_std": pstd([f["test_acc"] for f in per_fold]),
            "final_val_acc": statistics.mean(r["final_val_acc"]
                                             for r in runs),
            "folds": per_fold, "runs": runs,
            "forward_steps": mean_of(runs, "forward_steps"),
            "backward_steps": mean_of(runs, "backward_steps"),
            "backward_residual": mean_of(runs, "backward_residual"),
            "forward_converged": mean_of(runs, "forward_converged"),
            "adjoint_solved": mean_of(runs, "adjoint_solved"),
            "unrolled": mean_of(runs, "unrolled"),
            "peak_saved_bytes": max(r["peak_saved_bytes"] for r in runs),
            "wall_s": wall,
            "config": cfg.to_dict(),
            "is_global_zero": all(r["is_global_zero"] for r in runs),
        }


def train_babi(cfg: BabiTrainConfig,
               conv_factory: Optional[ConvFactory] = None) -> Dict[str, Any]:
    """Train one model per fold and question type; return (and write to
    ``cfg.output_json``) the report.

    Args:
        cfg: The run's options.
        conv_factory: Builds the propagation layer instead of
            :class:`pyg_rbp.RBPGatedGraphConv` (the layer options of ``cfg``
            are then unused); :func:`pyg_rbp.models.pyg_gated_factory`
            passes PyG's ``GatedGraphConv`` this way.

    Returns a dict with ``test_acc`` (mean over the folds and question types
    run of the validation-selected figure), ``test_acc_std`` (over folds, of
    each fold's mean over question types), ``runs`` (one record per fold and
    question type, with its history), ``folds`` (per-fold means),
    ``forward_steps`` / ``backward_steps`` (means over runs and epochs),
    ``wall_s`` and ``config``.
    """
    return run(BabiTask(), cfg, conv_factory)
