"""One training run, end to end: what ``examples/citation.py`` and the
accuracy benchmark both call."""
from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from ..data import DATASETS, OGB_DATASETS, SPLITS
from .config import RunConfig, opt
from .datamodules import LOADERS, NodeDataModule
from .module import NodeClassificationModule
from .runner import ConvFactory, Run, Task, Trained, run


@dataclass
class TrainConfig(RunConfig):
    """Every option of a node-classification run (the shared ones in
    :class:`RunConfig`); every field is a flag of ``examples/citation.py``.
    """

    max_epochs: int = opt(300)
    # Clipping keeps one bad step (a map briefly not contracting, its
    # implicit gradient wrong) from throwing training off course: without
    # it CiteSeer's runs spike and collapse, and one seed moved by 5 points
    # between 1 and 2 threads (docs/results.md).
    gradient_clip: Optional[float] = opt(1.0)
    dataset: str = opt("Cora", choices=DATASETS, help="the graph")
    split: str = opt("public", choices=SPLITS,
                     help="public split, or the paper's random 1/49/50 "
                          "split")
    loader: str = opt("full", choices=LOADERS,
                      help="full-batch, or neighbour-sampled mini-batches")
    batch_size: int = opt(512, minimum=1, help="seed nodes per batch with "
                                               "--loader neighbor")
    num_neighbors: Sequence[int] = opt(
        factory=lambda: [10, 10], minimum=-1,
        help="neighbours sampled per hop with --loader neighbor")
    resume: Optional[str] = opt(None, metavar="CKPT",
                                help="continue training from this "
                                     "checkpoint")
    dropout: float = opt(0.5, help="dropout before the recurrent layer")
    output_dropout: Optional[float] = opt(
        0.0, help="dropout on the layer's output, before the classifier "
                  "(the GRU step's runs used 0.5)")
    input_dropout: float = opt(0.8, help="dropout on the input features")
    normalize_features: bool = opt(
        False, help="row-normalise the features (PyG's NormalizeFeatures, "
                    "as GCN's and APPNP's recipes do); the contractive "
                    "model trains better on Planetoid's raw bag-of-words "
                    "(docs/results.md); the GRU step's runs used it")
    out_propagation: int = opt(0, minimum=0, help="smoothing steps on the "
                                                  "logits (0: none; the GRU "
                                                  "step's runs used 2)")
    warm_start: bool = opt(False, help="start each propagation at the last "
                                       "fixed point on the same graph "
                                       "(full batch; safe where F "
                                       "contracts)")

    def check(self) -> None:
        """Refuse bad or incompatible options before anything starts."""
        super().check()
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


def _peak_memory(accelerator_is_gpu: bool) -> int:
    if accelerator_is_gpu and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class NodeTask(Task):
    """Node classification: one training, the best-validation checkpoint
    tested (``last.ckpt`` kept after every epoch for ``--resume``)."""

    plotter = "plot_run"
    checkpointing = True
    trainer_options = {"use_distributed_sampler": False}

    def runs(self, cfg: TrainConfig) -> Iterable[Run]:
        # Checkpoints go to the logger's version folder, one per run:
        # <output_dir>/<dataset>-<method>-s<seed>/logs/version_N/checkpoints.
        return [Run("logs", cfg.seed)]

    def run_dir(self, cfg: TrainConfig, conv: str) -> Path:
        return Path(cfg.output_dir) / f"{cfg.dataset}-{cfg.method}-s{cfg.seed}"

    def build(self, cfg: TrainConfig, run: Run,
              conv_factory: Optional[ConvFactory]
              ) -> Tuple[pl.LightningModule, pl.LightningDataModule]:
        if conv_factory is not None:
            raise ValueError("node classification trains the package's own "
                             "layer (conv_factory must be None)")
        dm = NodeDataModule(cfg.dataset, cfg.data_root, cfg.split, cfg.seed,
                            cfg.loader, cfg.num_neighbors, cfg.batch_size,
                            download=cfg.download,
                            normalize_features=cfg.normalize_features)
        evaluator = cfg.dataset if cfg.dataset in OGB_DATASETS else None
        module = NodeClassificationModule(
            dm.num_features, dm.num_classes, hidden_channels=cfg.hidden,
            input_dropout=cfg.input_dropout, dropout=cfg.dropout,
            output_dropout=cfg.output_dropout,
            out_propagation=cfg.out_propagation, lr=cfg.lr,
            jacobian_weight=cfg.jacobian_weight,
            weight_decay=cfg.weight_decay, evaluator=evaluator,
            warm_start=cfg.warm_start, **cfg.layer_options())
        return module, dm

    def callbacks(self, cfg: TrainConfig) -> List[Callback]:
        best = ModelCheckpoint(filename="best-{epoch}", monitor="val_acc",
                               mode="max")
        # last.ckpt after every epoch, overwritten: what --resume continues
        # from (ModelCheckpoint(save_last=True) only writes it when the best
        # improves).
        latest = ModelCheckpoint(filename="last",
                                 enable_version_counter=False)
        return [best, latest]

    def resume_from(self, cfg: TrainConfig) -> Optional[str]:
        return cfg.resume

    def record(self, cfg: TrainConfig, done: Trained) -> Dict[str, Any]:
        trainer, module, history = done.trainer, done.module, done.history
        best = done.callbacks[0].best_model_path or None
        tested = trainer.test(module, done.dm, ckpt_path=best,
                              verbose=False)[0]
        steps = [e["fwd_steps"] for e in history.epochs if "fwd_steps" in e]
        on_gpu = trainer.accelerator.__class__.__name__.lower() \
            .startswith("cuda")
        return {
            "dataset": cfg.dataset, "method": cfg.method, "seed": cfg.seed,
            "test_acc": float(tested["test_acc"]),
            "val_acc": float(tested["val_acc"]),
            "epochs": trainer.current_epoch,
            "peak_memory_bytes": _peak_memory(on_gpu),
            "mean_forward_steps": sum(steps) / len(steps) if steps else None,
            "best_checkpoint": best,
            "residual_trace_first": history.first_trace,
            "residual_trace_final": list(module.model.stats.residual_trace),
            "config": cfg.to_dict(),
            **done.figures(),
        }

    def summarise(self, cfg: TrainConfig, records: List[Dict[str, Any]],
                  conv: str, wall: float) -> Dict[str, Any]:
        return records[0]  # one training: its record is the report


def train_node_classifier(cfg: TrainConfig) -> Dict[str, Any]:
    """Train, pick the best-validation checkpoint, test it, report.

    Returns a dict with ``test_acc``, ``val_acc`` (at the best validation
    checkpoint), ``epochs``, ``wall_s``, ``peak_memory_bytes`` (CUDA max
    allocated on GPU, else the process's peak RSS), ``peak_saved_bytes``
    (autograd-saved bytes of one training step), ``mean_forward_steps``,
    ``history`` and ``config``.
    """
    return run(NodeTask(), cfg)
