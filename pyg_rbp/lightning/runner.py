"""One runner for every task: seeding, the trainer, fit, the record of each
training and the report, written once.

A task (node classification, graph classification, bAbI) says what is its
own: which trainings a config asks for (:meth:`Task.runs`: one, one per fold,
one per fold and question type), how one is built (:meth:`Task.build`: the
LightningModule and DataModule), how its epoch is selected and tested and
what its record holds (:meth:`Task.record`), and how the records make the
report (:meth:`Task.summarise`). :func:`run` owns the rest, the same for
all: the seed of each training, the ``pl.Trainer`` and its logs, ``fit``
(resuming where the task allows), Lightning's notices once, and the JSON
report and figures from the global-zero process only. The ``pl.Trainer`` it
makes (:func:`make_trainer`) and the per-epoch record (:class:`EpochHistory`)
are here too.
"""
from __future__ import annotations

import logging
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, ClassVar, Dict, Iterable, Iterator, List,
                    Optional, Sequence, Tuple)

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import CSVLogger

from ..models.base import ConvFactory
from ..utils.records import write_json
from .base import flush_denormals
from .config import RunConfig

# -- the trainer and the epoch record ----------------------------------------

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


# -- the runner ---------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One training of a task: the logger's name for it, its seed and the
    task's own keys (``fold``, ``question_type``)."""

    version: str
    seed: int
    keys: Dict[str, int] = field(default_factory=dict)


@dataclass
class Trained:
    """One finished training, for :meth:`Task.record`."""

    run: Run
    trainer: pl.Trainer
    module: pl.LightningModule
    dm: pl.LightningDataModule
    history: EpochHistory
    #: What :meth:`Task.callbacks` gave this training, in that order.
    callbacks: Sequence[Callback]
    #: Seconds ``fit`` took.
    wall: float

    def figures(self) -> Dict[str, Any]:
        """What every task's record holds: the seconds of ``fit``, the
        shares of training calls whose forward converged, whose adjoint met
        its tolerance and which were unrolled (means of the per-epoch
        shares), the largest autograd-saved bytes of a training step, the
        per-epoch history and whether this is the global-zero process."""
        epochs = self.history.epochs
        return {"wall_s": self.wall,
                "forward_converged": mean_of(epochs, "fwd_converged"),
                "adjoint_solved": mean_of(epochs, "bwd_converged"),
                "unrolled": mean_of(epochs, "unrolled"),
                "peak_saved_bytes": int(self.module.peak_saved_bytes),
                "history": epochs,
                "is_global_zero": self.trainer.is_global_zero}


class Task:
    """What a task gives :func:`run` (see the module docstring)."""

    #: The function of :mod:`pyg_rbp.lightning.plots` that draws the report.
    plotter: ClassVar[str] = ""
    #: Whether Lightning's checkpointing is on (callbacks that save).
    checkpointing: ClassVar[bool] = False
    #: Further ``pl.Trainer`` options of the task.
    trainer_options: ClassVar[Dict[str, Any]] = {}

    def runs(self, cfg: Any) -> Iterable[Run]:
        raise NotImplementedError

    def run_dir(self, cfg: Any, conv: str) -> Path:
        """The folder of the run's logs (and checkpoints)."""
        raise NotImplementedError

    def build(self, cfg: Any, run: Run, conv_factory: Optional[ConvFactory]
              ) -> Tuple[pl.LightningModule, pl.LightningDataModule]:
        raise NotImplementedError

    def callbacks(self, cfg: Any) -> List[Callback]:
        """Callbacks beyond the epoch history (fresh per training)."""
        return []

    def resume_from(self, cfg: Any) -> Optional[str]:
        """A checkpoint to continue the training from (``None``: start)."""
        return None

    def record(self, cfg: Any, done: Trained) -> Dict[str, Any]:
        """The record of one finished training: its selected epoch, tested
        as the task's protocol says, and its figures."""
        raise NotImplementedError

    def summarise(self, cfg: Any, records: List[Dict[str, Any]], conv: str,
                  wall: float) -> Dict[str, Any]:
        """The report from the records of every training."""
        raise NotImplementedError


def conv_name(conv_factory: Optional[ConvFactory]) -> str:
    """``'rbp'``, or the factory's ``name`` (``'custom'`` without one)."""
    if conv_factory is None:
        return "rbp"
    return str(getattr(conv_factory, "name", "custom"))


def run(task: Task, cfg: RunConfig,
        conv_factory: Optional[ConvFactory] = None) -> Dict[str, Any]:
    """Check ``cfg``, train every run of ``task``, write and return the
    report (see the module docstring)."""
    cfg.check()
    flush_denormals()
    start = time.perf_counter()
    conv = conv_name(conv_factory)
    records = []
    for i, one in enumerate(task.runs(cfg)):
        with quiet_lightning(i > 0):  # Lightning's notices once
            records.append(_train(task, cfg, one, conv_factory, conv))
    result = task.summarise(cfg, records, conv, time.perf_counter() - start)
    write_report(result, cfg.output_json, cfg.plot, task.plotter)
    return result


def _train(task: Task, cfg: RunConfig, one: Run,
           conv_factory: Optional[ConvFactory], conv: str) -> Dict[str, Any]:
    pl.seed_everything(one.seed, workers=True, verbose=False)
    module, dm = task.build(cfg, one, conv_factory)
    history = EpochHistory()
    extra = task.callbacks(cfg)
    trainer = make_trainer(cfg, task.run_dir(cfg, conv), one.version,
                           [*extra, history], checkpointing=task.checkpointing,
                           **task.trainer_options)
    start = time.perf_counter()
    trainer.fit(module, dm, ckpt_path=task.resume_from(cfg))
    wall = time.perf_counter() - start
    return task.record(cfg, Trained(one, trainer, module, dm, history, extra,
                                    wall))


def write_report(result: Dict[str, Any], output_json: Optional[str],
                 plot_dir: Optional[str], plotter: str) -> None:
    """Write ``result`` to ``output_json`` and, with ``plot_dir``, call
    ``pyg_rbp.lightning.plots.<plotter>(result, plot_dir)`` (matplotlib is
    imported only then). Other ranks than global zero write nothing."""
    if not result.get("is_global_zero", True):
        return
    if output_json:
        write_json(output_json, result)
    if plot_dir:
        from . import plots
        getattr(plots, plotter)(result, plot_dir)


def pstd(values: List[float]) -> float:
    """The population standard deviation; 0 for a single value."""
    return statistics.pstdev(values) if len(values) > 1 else 0.0
