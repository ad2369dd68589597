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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from .._checks import check_choice, check_int
from ..data.babi import BABI_FOLDS, BABI_TASKS
from ..implicit import METHODS, SOLVERS
from .babi_module import BabiDataModule, BabiModule
from .base import flush_denormals
from .report import write_report
from .graph_run import EpochRecord, _quiet_lightning, _std

#: ``conv_factory(hidden_channels, num_edge_types) -> module``: a layer to
#: train in place of RBPGatedGraphConv (the benchmark's PyG baseline).
ConvFactory = Callable[[int, int], torch.nn.Module]


@dataclass
class BabiTrainConfig:
    """Every option of a bAbI run; the example's flags map one to one.

    ``num_layers``, ``backward_steps``, ``tol``, ``solver`` and
    ``backward_tol`` left at ``None`` take the layer's own defaults (the
    protocol of issue 17: per task only the hidden size and the edge types
    are set).
    """

    task: int = 4
    method: str = "neumann"
    folds: Sequence[int] = (1,)
    question_types: Optional[Sequence[int]] = None
    train_examples: int = 50
    val_examples: int = 50
    hidden: int = 16
    num_layers: Optional[int] = None
    backward_steps: Optional[int] = None
    tol: Optional[float] = None
    solver: Optional[str] = None
    backward_tol: Optional[float] = None
    edge_types: bool = True
    max_epochs: int = 300
    seed: int = 0
    lr: float = 0.01
    weight_decay: float = 0.0
    jacobian_weight: float = 0.0
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    precision: Optional[str] = None
    data_root: Optional[str] = None
    plot: Optional[str] = None
    output_json: Optional[str] = None
    output_dir: str = "outputs"
    progress_bar: bool = False
    download: bool = True

    def check(self) -> None:
        """Refuse bad or incompatible options before anything starts."""
        if self.task not in BABI_TASKS:
            raise ValueError(f"--task must be one of {BABI_TASKS} "
                             f"(got {self.task})")
        check_choice("method", self.method, METHODS)
        if self.solver is not None:
            check_choice("solver", self.solver, SOLVERS)
        if not self.folds:
            raise ValueError("--folds needs at least one fold (1..10)")
        for f in self.folds:
            check_int("fold", f, 1)
            if f not in BABI_FOLDS:
                raise ValueError(f"--folds: {f} is not a fold (1..10)")
        for name in ("hidden", "max_epochs", "train_examples",
                     "val_examples", "devices"):
            check_int(name, getattr(self, name), 1)
        for name in ("num_layers", "backward_steps"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        for q in self.question_types or ():
            check_int("question_types", q, 1)
        if self.plot:
            from .plots import check_plotting
            check_plotting()

    def layer_options(self) -> Dict[str, Any]:
        """The options set for the layer (the rest keep its defaults)."""
        out: Dict[str, Any] = {"method": self.method}
        for name in ("num_layers", "backward_steps", "tol", "solver",
                     "backward_tol"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


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
    record = EpochRecord()
    run_dir = Path(cfg.output_dir) / f"babi{cfg.task}-{cfg.method}-s{cfg.seed}"
    trainer = pl.Trainer(
        max_epochs=cfg.max_epochs, accelerator=cfg.accelerator,
        devices=cfg.devices, strategy=cfg.strategy, precision=cfg.precision,
        callbacks=[record],
        logger=CSVLogger(str(run_dir), name=f"fold{fold}-q{question_type}"),
        enable_checkpointing=False, log_every_n_steps=1,
        enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(run_dir))
    start = time.perf_counter()
    trainer.fit(module, dm)
    wall = time.perf_counter() - start
    epochs = record.epochs
    last_val = epochs[-1]["val_acc"]
    module.load_best()
    tested = trainer.test(module, dm, verbose=False)[0]

    def mean_of(key: str) -> Optional[float]:
        values = [e[key] for e in epochs if key in e]
        return statistics.mean(values) if values else None

    return {
        "fold": fold, "question_type": question_type,
        "best_epoch": module.best_epoch, "val_acc": module.best_key[0],
        "val_loss": -module.best_key[1], "test_acc": float(tested["test_acc"]),
        "final_val_acc": last_val,
        "train_examples": len(dm.train), "val_examples": len(dm.val),
        "test_examples": len(dm.test), "edge_types": types,
        "wall_s": wall,
        "forward_steps": mean_of("fwd_steps"),
        "forward_residual": mean_of("fwd_residual"),
        "backward_steps": mean_of("bwd_steps"),
        "backward_residual": mean_of("bwd_residual"),
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
            with _quiet_lightning(not first):
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

    def mean_of(key: str) -> Optional[float]:
        values = [r[key] for r in runs if r.get(key) is not None]
        return statistics.mean(values) if values else None

    result: Dict[str, Any] = {
        "task": cfg.task, "method": cfg.method,
        "conv": "custom" if conv_factory is not None else "rbp",
        "protocol": "one model per fold and question type; the epoch with "
                    "the best validation accuracy (ties: lower validation "
                    "loss, earlier epoch); test never used for selection",
        "test_acc": statistics.mean(r["test_acc"] for r in runs),
        "test_acc_std": _std([f["test_acc"] for f in per_fold]),
        "final_val_acc": statistics.mean(r["final_val_acc"] for r in runs),
        "folds": per_fold, "runs": runs,
        "forward_steps": mean_of("forward_steps"),
        "backward_steps": mean_of("backward_steps"),
        "backward_residual": mean_of("backward_residual"),
        "wall_s": time.perf_counter() - start,
        "config": asdict(cfg),
        "is_global_zero": all(r["is_global_zero"] for r in runs),
    }
    write_report(result, cfg.output_json, cfg.plot, "plot_babi")
    return result
