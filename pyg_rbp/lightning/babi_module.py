"""LightningModule and DataModule for the bAbI tasks (one model per question
type, full-batch training on a few dozen stories)."""
from __future__ import annotations

from typing import Any, List, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from .._checks import check_int
from ..data.babi import babi_splits, load_babi
from ..models.babi import RBPGGNN, babi_loss
from .base import RBPLightningModule, check_jacobian_weight
from .datamodules import evaluation_sampler


class BabiDataModule(pl.LightningDataModule):
    """The paper's protocol for one task, fold and question type
    (:func:`pyg_rbp.data.babi.babi_splits`): the first ``train_examples``
    questions of the fold's training file for training, the next
    ``val_examples`` for validation, the fold's test file for test. The
    test set is scored once, with the weights of the best validation epoch
    (:class:`BabiModule` keeps them), so selection looks at validation
    only and a run does not pay for scoring up to 4000 test questions every
    epoch.

    Args:
        task (int): A bAbI task (4, 15, 16, 18, 19).
        fold (int): 1 to 10.
        question_type (int): The question type (1-based).
        train_examples (int, optional): (default: ``50``)
        val_examples (int, optional): (default: ``50``)
        batch_size (int, optional): Training stories per batch; ``0`` is
            full batch. (default: ``0``)
        data_root (str, optional): The data root (``bAbI/`` below it).
        download (bool, optional): Fetch missing files.
    """

    def __init__(self, task: int, fold: int, question_type: int = 1,
                 train_examples: int = 50, val_examples: int = 50,
                 batch_size: int = 0, data_root: Optional[str] = None,
                 download: bool = True) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, 0)
        self.train, self.val, self.test, self.info = babi_splits(
            task, fold, question_type, train_examples, val_examples,
            data_root, download)

    @staticmethod
    def question_types_of(task: int, fold: int,
                          data_root: Optional[str] = None,
                          download: bool = True) -> List[int]:
        """The question types of a task's training file."""
        return load_babi(task, fold, "train", data_root,
                         download).question_types()

    def _loader(self, data: List[Data], size: int,
                shuffle: bool) -> DataLoader:
        if not shuffle:  # every validation / test graph once, on one rank
            return DataLoader(data, batch_size=size or len(data),
                              sampler=evaluation_sampler(
                                  data, getattr(self, "trainer", None)))
        return DataLoader(data, batch_size=size or len(data),
                          shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.batch_size,
                            shuffle=self.batch_size > 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, 0, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, 1000, False)


class BabiModule(RBPLightningModule):
    r"""Trains :class:`pyg_rbp.models.RBPGGNN` on a bAbI task.

    Loss: the negative log-likelihood of the answer node (``'node'``) or
    cross-entropy (``'graph'``; both steps for ``'path'``), plus
    ``jacobian_weight`` times the layer's Jacobian penalty when it is on.
    Logged per epoch: ``train_loss``, ``train_acc``, ``val_loss``,
    ``val_acc`` and the solver statistics (``fwd_steps``, ``fwd_residual``,
    ``bwd_steps``, ``bwd_residual``). After each validation the module
    keeps a copy of its weights if the epoch is the best so far (higher
    validation accuracy; ties: lower validation loss, then the earlier
    epoch); :meth:`load_best` restores them before testing.

    Args:
        annotation_size (int): Question slots.
        output (str): ``'node'``, ``'graph'`` or ``'path'``.
        num_classes (int, optional): (default: ``2``)
        hidden_channels (int, optional): (default: ``16``)
        num_edge_types (int, optional): (default: ``1``)
        lr (float, optional): Adam's learning rate. (default: ``0.01``)
        weight_decay (float, optional): (default: ``0.0``)
        jacobian_weight (float, optional): ``0`` (default) leaves the layer's
            penalty off.
        conv (torch.nn.Module, optional): A propagation layer to use instead
            of :class:`pyg_rbp.RBPGatedGraphConv` (see :class:`RBPGGNN`).
        **conv_kwargs (optional): Options of the layer.
    """

    def __init__(self, annotation_size: int, output: str,
                 num_classes: int = 2, hidden_channels: int = 16,
                 num_edge_types: int = 1, lr: float = 0.01,
                 weight_decay: float = 0.0, jacobian_weight: float = 0.0,
                 conv: Optional[torch.nn.Module] = None,
                 **conv_kwargs: Any) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["conv"])
        if conv is None:
            self.jacobian_weight = check_jacobian_weight(jacobian_weight,
                                                         conv_kwargs)
        self.model = RBPGGNN(annotation_size, hidden_channels, output,
                             num_classes, num_edge_types, conv=conv,
                             **conv_kwargs)
        self.best_key: Optional[tuple] = None
        self.best_epoch = -1
        self._best_state: Optional[dict] = None

    EVAL_METRICS = ("val_loss", "val_acc", "test_loss", "test_acc")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()  # logs val_loss, val_acc
        metrics = self.trainer.callback_metrics
        if "val_acc" not in metrics:
            return
        key = (float(metrics["val_acc"]), -float(metrics["val_loss"]))
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch = key, self.current_epoch
            self._best_state = {k: v.detach().clone()
                                for k, v in self.model.state_dict().items()}

    def load_best(self) -> None:
        """Restore the weights of the best validation epoch."""
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch.x, batch.edge_index,
                          getattr(batch, "edge_type", None), batch.batch,
                          batch.num_graphs)

    def _scores(self, batch: Batch, prefix: str) -> Tensor:
        out = self(batch)
        loss, correct = babi_loss(out, batch.y, self.model.output, batch.ptr)
        self._record(prefix, loss, correct, batch.num_graphs)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        with self._metered():
            loss = self._scores(batch, "train")
        return self._add_penalty(loss, self.model.stats)

    def on_train_batch_end(self, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._log_backward(self.model.stats)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        with torch.no_grad():
            self._scores(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        with torch.no_grad():
            self._scores(batch, "test")
