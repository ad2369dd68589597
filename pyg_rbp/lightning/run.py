"""One training run, end to end: what ``examples/citation.py`` and the
accuracy benchmark both call."""
from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from .._checks import check_choice, check_int
from ..data import DATASETS, OGB_DATASETS, SPLITS
from ..implicit import METHODS, SOLVERS
from .base import flush_denormals
from .report import write_report
from .datamodule import LOADERS, NodeDataModule
from .module import NodeClassificationModule


@dataclass
class TrainConfig:
    """Every option of a run; the example's flags map one to one."""

    dataset: str = "Cora"
    method: str = "neumann"
    num_layers: int = 30
    backward_steps: int = 10
    hidden: int = 64
    max_epochs: int = 200
    split: str = "public"
    seed: int = 0
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    precision: Optional[str] = None
    loader: str = "full"
    data_root: Optional[str] = None
    resume: Optional[str] = None
    plot: Optional[str] = None
    output_json: Optional[str] = None
    lr: float = 0.01
    weight_decay: float = 5e-4
    dropout: float = 0.5
    input_dropout: float = 0.8
    out_propagation: int = 2
    jacobian_weight: float = 1.0
    gradient_clip: Optional[float] = None
    tol: float = 1e-5
    solver: str = "fixed_point"
    backward_tol: float = 1e-6
    batch_size: int = 512
    num_neighbors: Sequence[int] = field(default_factory=lambda: [10, 10])
    output_dir: str = "outputs"
    progress_bar: bool = True
    download: bool = True

    def check(self) -> None:
        """Refuse bad or incompatible options before anything starts."""
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("method", self.method, METHODS)
        check_choice("split", self.split, SPLITS)
        check_choice("loader", self.loader, LOADERS)
        check_choice("solver", self.solver, SOLVERS)
        check_int("num_layers", self.num_layers, 1)
        check_int("backward_steps", self.backward_steps, 1)
        check_int("hidden", self.hidden, 1)
        check_int("max_epochs", self.max_epochs, 1)
        check_int("devices", self.devices, 1)
        if self.devices > 1 and self.loader == "full":
            raise ValueError(
                f"--devices {self.devices} with --loader full would repeat "
                f"the same whole-graph step on every device; use --loader "
                f"neighbor to split the training nodes between devices")
        if self.dataset in OGB_DATASETS and self.split != "public":
            raise ValueError(f"{self.dataset} has one official split; drop "
                             f"--split {self.split}")
        if self.resume is not None and not Path(self.resume).is_file():
            raise ValueError(f"--resume: no checkpoint file at "
                             f"{self.resume}")
        if self.plot:
            from .plots import check_plotting
            check_plotting()


class History(Callback):
    """Keeps each epoch's logged metrics, and the propagation residuals of
    the first training step, for plots and the JSON report."""

    def __init__(self) -> None:
        self.epochs: List[Dict[str, float]] = []
        self.first_trace: List[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.first_trace:
            self.first_trace = list(module.model.conv.stats.residual_trace)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: Any) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["epoch"] = trainer.current_epoch
        self.epochs.append(metrics)


def _peak_memory(accelerator_is_gpu: bool) -> int:
    if accelerator_is_gpu and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def train_node_classifier(cfg: TrainConfig) -> Dict[str, Any]:
    """Train, pick the best-validation checkpoint, test it, report.

    Returns a dict with ``test_acc``, ``val_acc`` (at the best validation
    checkpoint), ``epochs``, ``wall_s``, ``peak_memory_bytes`` (CUDA max
    allocated on GPU, else the process's peak RSS), ``peak_saved_bytes``
    (autograd-saved bytes of one training step), ``mean_forward_steps``,
    ``history`` and ``config``.
    """
    cfg.check()
    flush_denormals()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = NodeDataModule(cfg.dataset, cfg.data_root, cfg.split, cfg.seed,
                        cfg.loader, cfg.num_neighbors, cfg.batch_size,
                        download=cfg.download)
    evaluator = cfg.dataset if cfg.dataset in OGB_DATASETS else None
    module = NodeClassificationModule(
        dm.num_features, dm.num_classes, hidden_channels=cfg.hidden,
        input_dropout=cfg.input_dropout, dropout=cfg.dropout,
        out_propagation=cfg.out_propagation, lr=cfg.lr,
        jacobian_weight=cfg.jacobian_weight,
        weight_decay=cfg.weight_decay, evaluator=evaluator,
        num_layers=cfg.num_layers, method=cfg.method, tol=cfg.tol,
        solver=cfg.solver, backward_steps=cfg.backward_steps,
        backward_tol=cfg.backward_tol)
    run_dir = Path(cfg.output_dir) / f"{cfg.dataset}-{cfg.method}-s{cfg.seed}"
    history = History()
    # Checkpoints go to the logger's version folder, one per run:
    # <output_dir>/<dataset>-<method>-s<seed>/logs/version_N/checkpoints.
    checkpoint = ModelCheckpoint(filename="best-{epoch}", monitor="val_acc",
                                 mode="max")
    # last.ckpt after every epoch, overwritten: what --resume continues from
    # (ModelCheckpoint(save_last=True) only writes it when the best improves).
    latest = ModelCheckpoint(filename="last", enable_version_counter=False)
    trainer = pl.Trainer(
        max_epochs=cfg.max_epochs, accelerator=cfg.accelerator,
        devices=cfg.devices, strategy=cfg.strategy,
        precision=cfg.precision,
        callbacks=[checkpoint, latest, history],
        use_distributed_sampler=False,
        logger=CSVLogger(str(run_dir), name="logs"), log_every_n_steps=1,
        enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
        gradient_clip_val=cfg.gradient_clip,
        default_root_dir=str(run_dir), num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, dm, ckpt_path=cfg.resume)
    wall = time.perf_counter() - start
    best = checkpoint.best_model_path or None
    tested = trainer.test(module, dm, ckpt_path=best, verbose=False)[0]
    steps = [e["fwd_steps"] for e in history.epochs if "fwd_steps" in e]
    on_gpu = trainer.accelerator.__class__.__name__.lower().startswith("cuda")
    result = {
        "dataset": cfg.dataset, "method": cfg.method, "seed": cfg.seed,
        "test_acc": float(tested["test_acc"]),
        "val_acc": float(tested["val_acc"]),
        "epochs": trainer.current_epoch,
        "wall_s": wall,
        "peak_memory_bytes": _peak_memory(on_gpu),
        "peak_saved_bytes": int(module.peak_saved_bytes),
        "mean_forward_steps": sum(steps) / len(steps) if steps else None,
        "best_checkpoint": best,
        "residual_trace_first": history.first_trace,
        "residual_trace_final": list(module.model.conv.stats.residual_trace),
        "history": history.epochs,
        "config": asdict(cfg),
        "is_global_zero": trainer.is_global_zero,
    }
    write_report(result, cfg.output_json, cfg.plot, "plot_run")
    return result

