"""The Trainer and the epoch record every run uses."""
from __future__ import annotations

import logging
import statistics
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import CSVLogger

from .config import RunConfig


class EpochHistory(Callback):
    """Each epoch's logged metrics (after validation) with its training
    time ``epoch_s``, and the propagation residuals of the first training
    step (``first_trace``), for the report and the plots."""

    def __init__(self) -> None:
        self.epochs: List[Dict[str, float]] = []
        self.first_trace: List[float] = []
        self._epoch_start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: Any) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        stats = getattr(getattr(module, "model", None), "stats", None)
        if not self.first_trace and stats is not None:
            self.first_trace = list(stats.residual_trace)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: Any) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["epoch"] = trainer.current_epoch
        metrics["epoch_s"] = time.perf_counter() - self._epoch_start
        self.epochs.append(metrics)


# Lightning's own use of torch's pytree API warns on every run (its
# _pytree.py, not our code): silenced by its exact text, where it comes from.
warnings.filterwarnings(
    "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    module=r"pytorch_lightning\.utilities\._pytree")


class _NoTips(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger ("💡 Tip: ...
    litlogger"), printed by every Trainer whose logger is not theirs: it
    says nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.getMessage())


def _drop_tips() -> None:
    for name in ("pytorch_lightning.utilities.rank_zero",
                 "lightning_fabric.utilities.rank_zero",
                 "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())


def make_trainer(cfg: RunConfig, run_dir: Path, log_name: str,
                 callbacks: Sequence[Callback], checkpointing: bool = False,
                 **trainer_kwargs: Any) -> pl.Trainer:
    """The ``pl.Trainer`` of a run: the config's epochs, devices, precision
    and gradient clipping; CSV logs under ``run_dir/log_name``; every epoch
    logged; no sanity validation and no model summary.

    Args:
        cfg: The run's options.
        run_dir: The run's folder (logs, checkpoints).
        log_name: The CSV logger's name below ``run_dir``.
        callbacks: The run's callbacks.
        checkpointing: Whether Lightning's checkpointing is on (the node
            run's ``ModelCheckpoint`` callbacks need it).
        **trainer_kwargs: Further ``pl.Trainer`` options.
    """
    _drop_tips()
    return pl.Trainer(
        max_epochs=cfg.max_epochs, accelerator=cfg.accelerator,
        devices=cfg.devices, strategy=cfg.strategy, precision=cfg.precision,
        callbacks=list(callbacks),
        logger=CSVLogger(str(run_dir), name=log_name), log_every_n_steps=1,
        enable_checkpointing=checkpointing,
        enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
        gradient_clip_val=cfg.gradient_clip or None, num_sanity_val_steps=0,
        default_root_dir=str(run_dir), **trainer_kwargs)


@contextmanager
def quiet_lightning(quiet: bool) -> Iterator[None]:
    """Lightning's start-up notices (devices, tips) once, not once a fold."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning",
                                              "lightning_fabric",
                                              "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    if quiet:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def mean_of(records: Sequence[Dict[str, Any]], key: str) -> Optional[float]:
    """The mean of ``key`` over the records that have it (``None`` if none
    has)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.mean(values) if values else None
