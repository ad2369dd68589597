"""LightningModule for graph classification with an RBP-trained GGNN."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch

from ..models import RBPGraphClassifier
from .base import RBPLightningModule, check_jacobian_weight


class GraphClassificationModule(RBPLightningModule):
    r"""Trains :class:`pyg_rbp.models.RBPGraphClassifier` with cross-entropy
    on mini-batches of graphs.

    Logged per epoch (``sync_dist=True``): ``train_loss``, ``train_acc``;
    ``val_loss``, ``val_acc`` (first validation loader) and ``test_loss``,
    ``test_acc`` (second one, for the record: model selection looks at
    validation only); and the layer's solver statistics of the training
    passes: ``fwd_steps`` (steps of the loop over the whole mini-batch),
    ``graph_steps`` (mean over the batch's graphs of the step at which each
    stopped), ``fwd_residual``, ``bwd_steps``, ``bwd_residual``,
    ``jac_penalty``.

    Args:
        in_channels (int): Node feature size.
        num_classes (int): Number of classes.
        hidden_channels (int, optional): (default: :obj:`64`)
        num_edge_types (int, optional): (default: :obj:`1`)
        readout (str, optional): ``'gated'``, ``'sum'`` or ``'mean'``.
            (default: :obj:`"gated"`)
        dropout (float, optional): Dropout in the MLP head.
            (default: :obj:`0.0`)
        lr (float, optional): Adam's learning rate. (default: :obj:`0.005`)
        weight_decay (float, optional): (default: :obj:`5e-4`)
        jacobian_weight (float, optional): Weight of the Jacobian penalty
            (an estimate of :math:`\rho(J)^2`, see :func:`pyg_rbp.rbp`) in the
            loss; ``0`` switches it off. Ignored with ``conv``. On
            MUTAG it makes the GRU step's propagation converge in ~7 steps
            instead of running into ``num_layers``
            (docs/graph_classification.md). (default: :obj:`None`: 1 with
            ``cell='gru'``, 0 with the contractive step, which needs none)
        **model_kwargs (optional): Further options of
            :class:`~pyg_rbp.models.RBPGraphClassifier` (``conv``,
            ``per_graph_stopping``) and of the layer (``num_layers``,
            ``method``, ``backward_steps``, ``normalize``, ...).
    """

    def __init__(self, in_channels: int, num_classes: int,
                 hidden_channels: int = 64, num_edge_types: int = 1,
                 readout: str = "gated", dropout: float = 0.0,
                 lr: float = 0.005, weight_decay: float = 5e-4,
                 jacobian_weight: Optional[float] = None,
                 **model_kwargs: Any) -> None:
        super().__init__()
        # a conv module or factory is not a hyperparameter (nor picklable)
        self.save_hyperparameters(ignore=["conv"])
        if model_kwargs.get("conv") is None:
            self.jacobian_weight = check_jacobian_weight(jacobian_weight,
                                                         model_kwargs)
        self.model = RBPGraphClassifier(in_channels, hidden_channels,
                                        num_classes,
                                        num_edge_types=num_edge_types,
                                        readout=readout, dropout=dropout,
                                        **model_kwargs)

    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch.x, batch.edge_index, batch.batch,
                          getattr(batch, "edge_type", None), batch.num_graphs)

    EVAL_METRICS = ("val_loss", "val_acc", "test_loss", "test_acc")

    def _scores(self, batch: Batch, prefix: str) -> Tensor:
        out = self(batch)
        loss = F.cross_entropy(out, batch.y)
        correct = (out.argmax(-1) == batch.y).sum()
        self._record(prefix, loss, correct, batch.num_graphs)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        with self._metered():
            loss = self._scores(batch, "train")
        stats = self.model.stats
        if stats is not None:
            steps = stats.graph_steps
            self._log("graph_steps", stats.forward_steps if steps is None
                      else steps.float().mean(), batch.num_graphs)
        return self._add_penalty(loss, stats)

    def on_train_batch_end(self, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._log_backward(self.model.stats)

    def validation_step(self, batch: Batch, batch_idx: int,
                        dataloader_idx: int = 0) -> None:
        with torch.no_grad():
            self._scores(batch, "val" if dataloader_idx == 0 else "test")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        with torch.no_grad():
            self._scores(batch, "test")
