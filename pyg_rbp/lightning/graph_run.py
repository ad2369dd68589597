"""Graph classification by k-fold cross-validation, end to end: what
``examples/graph_classification.py`` and its benchmark call.

Protocol (stated in docs/graph_classification.md): stratified ``folds``-fold
cross-validation; in each fold a stratified 10 % of all graphs, taken from
the fold's training side, is the validation set; every epoch is scored on
validation and test; the fold's figure is the test accuracy at the epoch with
the best validation accuracy (ties: lower validation loss, then the earlier
epoch). Test accuracy never takes part in the choice. The report also gives,
labelled as optimistic, the two protocols that do look at test: one epoch for
all folds chosen by mean test accuracy (GIN's) and each fold's best test
epoch (IGNN's).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import pytorch_lightning as pl

from ..data import ERRICA_DATASETS, TU_DATASETS
from ..models.base import ConvFactory
from ..models.graph_classifier import READOUTS
from .config import RunConfig, opt
from .datamodules import FOLD_SPLITS, GraphDataModule
from .graph_module import GraphClassificationModule
from .runner import Run, Task, Trained, mean_of, pstd, run


@dataclass
class GraphTrainConfig(RunConfig):
    """Every option of a cross-validated run (the shared ones in
    :class:`RunConfig`); every field is a flag of
    ``examples/graph_classification.py``."""

    max_epochs: int = opt(100)
    lr: float = opt(0.005)
    progress_bar: bool = opt(False)
    dataset: str = opt("MUTAG", choices=TU_DATASETS, help="the TU dataset")
    folds: int = opt(10, minimum=2, help="k of the stratified k-fold")
    splits: str = opt("stratified", choices=FOLD_SPLITS,
                      help="stratified: our k folds; errica: the 10 fixed "
                           "folds of Errica et al. (ICLR 2020) with their "
                           "inner train/validation holdout (NCI1, "
                           "PROTEINS, ENZYMES; <data-root>/TUDataset/"
                           "splits/)")
    node_attributes: bool = opt(False, help="append the continuous node "
                                            "attributes (ENZYMES: 18, "
                                            "PROTEINS: 1)")
    standardize: bool = opt(False, help="scale each node feature to zero "
                                        "mean, unit variance over the "
                                        "fold's training graphs")
    fold: Optional[Sequence[int]] = opt(
        None, minimum=0, help="run only these folds (default: all)")
    batch_size: int = opt(32, minimum=1, help="graphs per mini-batch")
    readout: str = opt("gated", choices=READOUTS, help="graph readout")
    edge_types: bool = opt(True, help="one weight per edge label "
                                      "(--no-edge-types: ignore them)")
    per_graph_stopping: bool = opt(
        True, negative="--batch-wide-stopping",
        help="each graph of a batch stops when it has converged "
             "(--batch-wide-stopping: when the whole batch has)")
    normalize: bool = opt(False, help="symmetric normalisation with "
                                      "self-loops")
    dropout: float = opt(0.0, help="dropout in the MLP head")
    val_fraction: float = opt(0.1, help="share of all graphs, from each "
                                        "fold's training side, used for "
                                        "validation")

    def check(self) -> None:
        """Refuse bad or incompatible options before anything starts."""
        super().check()
        for f in self.fold or ():
            if f >= self.folds:
                raise ValueError(f"--fold {f} is not in [0, {self.folds})")
        if self.splits == "errica":
            if self.dataset not in ERRICA_DATASETS:
                raise ValueError(f"--splits errica exists for "
                                 f"{ERRICA_DATASETS} (got {self.dataset})")
            if self.folds != 10:
                raise ValueError(f"the Errica folds are 10 (got --folds "
                                 f"{self.folds})")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"'val_fraction' must be in (0, 1) (got "
                             f"{self.val_fraction})")

    def folds_to_run(self) -> List[int]:
        return list(self.fold) if self.fold else list(range(self.folds))


def select_epoch(history: List[Dict[str, float]]) -> Dict[str, float]:
    """The epoch with the best validation accuracy; ties go to the lower
    validation loss, then to the earlier epoch. Looks at nothing else."""
    return max(history, key=lambda e: (e["val_acc"], -e["val_loss"],
                                       -e["epoch"]))


def optimistic_figures(folds: List[List[Dict[str, float]]]) -> Dict[str, Any]:
    """Figures that look at test accuracy to choose: labelled as such."""
    epochs = min(len(h) for h in folds)
    per_epoch = [statistics.mean(h[e]["test_acc"] for h in folds)
                 for e in range(epochs)]
    best = max(range(epochs), key=lambda e: per_epoch[e])
    per_fold_best = [max(e["test_acc"] for e in h) for h in folds]
    return {
        "gin_style_one_epoch_for_all_folds_chosen_on_test": {
            "epoch": best, "test_acc": per_epoch[best],
            "test_acc_std": pstd([h[best]["test_acc"] for h in folds])},
        "ignn_style_each_folds_best_test_epoch": {
            "test_acc": statistics.mean(per_fold_best),
            "test_acc_std": pstd(per_fold_best)},
    }


class GraphTask(Task):
    """Graph classification: one training per fold, the epoch selected on
    validation from the per-epoch scores (test never used to choose)."""

    plotter = "plot_folds"

    def runs(self, cfg: GraphTrainConfig) -> Iterable[Run]:
        return [Run(f"fold{fold}", cfg.seed + fold, {"fold": fold})
                for fold in cfg.folds_to_run()]

    def run_dir(self, cfg: GraphTrainConfig, conv: str) -> Path:
        return Path(cfg.output_dir) / (f"{cfg.dataset}-{conv}-{cfg.method}"
                                       f"-s{cfg.seed}")

    def build(self, cfg: GraphTrainConfig, run: Run,
              conv_factory: Optional[ConvFactory]
              ) -> Tuple[pl.LightningModule, pl.LightningDataModule]:
        dm = GraphDataModule(cfg.dataset, cfg.data_root, run.keys["fold"],
                             cfg.folds, cfg.seed, cfg.batch_size,
                             cfg.val_fraction, download=cfg.download,
                             splits=cfg.splits,
                             node_attributes=cfg.node_attributes,
                             standardize=cfg.standardize)
        types = dm.num_edge_types if cfg.edge_types else 1
        model_kwargs: Dict[str, Any] = dict(
            per_graph_stopping=cfg.per_graph_stopping)
        if conv_factory is None:
            model_kwargs.update(cfg.layer_options(), normalize=cfg.normalize)
        else:
            # a layer without edge types (PyG's GatedGraphConv) says so: the
            # graph is then given to it untyped, as its users have it
            types = min(types, getattr(conv_factory, "num_edge_types", types))
            model_kwargs["conv"] = conv_factory
        module = GraphClassificationModule(
            dm.num_features, dm.num_classes, hidden_channels=cfg.hidden,
            num_edge_types=types, readout=cfg.readout, dropout=cfg.dropout,
            lr=cfg.lr, weight_decay=cfg.weight_decay,
            jacobian_weight=cfg.jacobian_weight, **model_kwargs)
        return module, dm

    def record(self, cfg: GraphTrainConfig, done: Trained) -> Dict[str, Any]:
        epochs, module = done.history.epochs, done.module
        best = select_epoch(epochs)
        train_idx, val_idx, test_idx = done.dm.split
        return {
            "fold": done.run.keys["fold"], "best_epoch": int(best["epoch"]),
            "val_acc": best["val_acc"], "val_loss": best["val_loss"],
            "test_acc": best["test_acc"],
            "train_graphs": len(train_idx), "val_graphs": len(val_idx),
            "test_graphs": len(test_idx),
            "edge_types": module.model.num_edge_types,
            "epoch_s": statistics.median(e["epoch_s"] for e in epochs),
            "mean_fwd_steps": statistics.mean(e.get("fwd_steps", 0.0)
                                              for e in epochs),
            "mean_graph_steps": statistics.mean(e.get("graph_steps", 0.0)
                                                for e in epochs),
            **done.figures(),
        }

    def summarise(self, cfg: GraphTrainConfig,
                  records: List[Dict[str, Any]], conv: str,
                  wall: float) -> Dict[str, Any]:
        return summarise_folds(cfg, records, conv, wall)


def summarise_folds(cfg: GraphTrainConfig, folds: List[Dict[str, Any]],
                    conv: str, wall_s: float) -> Dict[str, Any]:
    """The report of a cross-validation from its per-fold records (what
    :func:`train_graph_classifier` returns; the benchmarks also join
    folds trained in separate processes with it)."""
    accs = [f["test_acc"] for f in folds]
    split = "the 10 fixed folds of Errica et al. (ICLR 2020), their inner " \
        "validation holdout" if cfg.splits == "errica" else \
        "stratified k-fold, a stratified validation part of each fold's " \
        "training side"
    return {
        "dataset": cfg.dataset, "method": cfg.method, "conv": conv,
        "protocol": f"{split}; per fold, the epoch with the best "
                    f"validation accuracy (ties: lower validation loss); "
                    f"test never used for selection",
        "test_acc": statistics.mean(accs), "test_acc_std": pstd(accs),
        "folds_run": len(folds),
        "forward_steps_per_graph": statistics.mean(
            f["mean_graph_steps"] for f in folds),
        "forward_steps_per_batch": statistics.mean(
            f["mean_fwd_steps"] for f in folds),
        "epoch_s": statistics.mean(f["epoch_s"] for f in folds),
        "forward_converged": mean_of(folds, "forward_converged"),
        "adjoint_solved": mean_of(folds, "adjoint_solved"),
        "unrolled": mean_of(folds, "unrolled"),
        "peak_saved_bytes": max((f.get("peak_saved_bytes") or 0
                                 for f in folds), default=0),
        "wall_s": wall_s,
        "optimistic": optimistic_figures([f["history"] for f in folds]),
        "folds": folds, "config": cfg.to_dict(),
        "is_global_zero": all(f["is_global_zero"] for f in folds),
    }


def train_graph_classifier(cfg: GraphTrainConfig,
                           conv_factory: Optional[ConvFactory] = None
                           ) -> Dict[str, Any]:
    """Cross-validate; return (and write to ``cfg.output_json``) the report.

    ``conv_factory(hidden_channels, num_edge_types) -> module`` trains that
    layer in place of :class:`pyg_rbp.RBPGatedGraphConv` (the layer options
    of ``cfg`` are then unused; a factory with ``num_edge_types = 1`` gets
    the graphs untyped; its ``name`` goes into the report's ``conv``):
    :func:`pyg_rbp.models.pyg_gated_factory` passes PyG's
    ``GatedGraphConv`` this way.

    Returns a dict with ``test_acc`` (mean over folds of the validation-
    selected figure), ``test_acc_std``, ``folds`` (per-fold records with
    their histories), ``forward_steps_per_graph`` (mean over folds and
    epochs of the step at which each training graph stopped),
    ``optimistic`` (labelled figures that look at test), ``wall_s`` and
    ``config``.
    """
    return run(GraphTask(), cfg, conv_factory)
