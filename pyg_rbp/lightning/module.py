"""LightningModule for node classification with an RBP-trained GGNN."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torchmetrics.functional.classification import multiclass_accuracy

from ..models import RBPNodeClassifier
from .base import RBPLightningModule, check_jacobian_weight


class NodeClassificationModule(RBPLightningModule):
    r"""Trains :class:`pyg_rbp.models.RBPNodeClassifier` with cross-entropy.

    Batches are either the whole graph (``train_mask`` selects the loss
    nodes) or a neighbour-sampled subgraph whose first ``batch_size`` nodes
    are the seed nodes, as PyG's ``NeighborLoader`` yields them.

    Logged per epoch (``sync_dist=True``, so identical on every DDP rank):
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``test_acc``,
    and the layer's solver statistics of the training forward/backward:
    ``fwd_steps``, ``fwd_residual``, ``bwd_steps``, ``bwd_residual``,
    ``jac_penalty``, plus ``saved_mib`` (bytes autograd kept for one
    training step). ``train_loss`` is the cross-entropy alone; the
    optimised loss adds ``jacobian_weight * jac_penalty``.

    Args:
        in_channels (int): Input feature size.
        num_classes (int): Number of classes.
        hidden_channels (int, optional): (default: :obj:`64`)
        input_dropout (float, optional): (default: :obj:`0.8`)
        dropout (float, optional): Before the layer. (default: :obj:`0.5`)
        output_dropout (float, optional): On the layer's output (``None``:
            ``dropout``). (default: :obj:`0.0`)
        out_propagation (int, optional): Smoothing steps on the logits (see
            :class:`~pyg_rbp.models.RBPNodeClassifier`). (default: :obj:`0`)
        lr (float, optional): Adam's learning rate. (default: :obj:`0.01`)
        weight_decay (float, optional): (default: :obj:`5e-4`)
        jacobian_weight (float, optional): Weight of the Jacobian penalty
            (by default an estimate of :math:`\rho(J)^2`, see
            :func:`pyg_rbp.rbp`) added to the loss, which keeps the
            GRU step's propagation contractive so the implicit gradient stays
            accurate; ``0`` switches it off. (default: :obj:`None`: 1 with
            ``cell='gru'``, 0 with the contractive step, which needs none)
        evaluator (str, optional): An OGB dataset name: score accuracy with
            its :class:`ogb.nodeproppred.Evaluator`. (default: :obj:`None`)
        **conv_kwargs (optional): Options of
            :class:`pyg_rbp.RBPGatedGraphConv` (``num_layers``, ``method``,
            ``tol``, ``solver``, ``backward_steps``, ``backward_tol``,
            ``normalize``).
    """

    def __init__(self, in_channels: int, num_classes: int,
                 hidden_channels: int = 64, input_dropout: float = 0.8,
                 dropout: float = 0.5, out_propagation: int = 0,
                 output_dropout: Optional[float] = 0.0,
                 lr: float = 0.01, weight_decay: float = 5e-4,
                 jacobian_weight: Optional[float] = None, evaluator: Optional[str] = None,
                 **conv_kwargs: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        conv_kwargs.setdefault("normalize", True)
        self.jacobian_weight = check_jacobian_weight(jacobian_weight,
                                                     conv_kwargs)
        self.model = RBPNodeClassifier(in_channels, hidden_channels,
                                       num_classes,
                                       input_dropout=input_dropout,
                                       dropout=dropout,
                                       output_dropout=output_dropout,
                                       out_propagation=out_propagation,
                                       **conv_kwargs)
        self.num_classes = num_classes
        self._evaluator = None
        if evaluator is not None:
            from ogb.nodeproppred import Evaluator
            self._evaluator = Evaluator(evaluator)

    # -- helpers ---------------------------------------------------------
    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.model(x, edge_index)

    def _accuracy(self, logits: Tensor, y: Tensor) -> Tensor:
        pred = logits.argmax(-1)
        if self._evaluator is not None:
            acc = self._evaluator.eval({"y_true": y.view(-1, 1).cpu(),
                                        "y_pred": pred.view(-1, 1).cpu()})
            return torch.tensor(float(acc["acc"]), device=logits.device)
        if y.numel() == 0:
            return logits.new_zeros(())
        return multiclass_accuracy(pred, y, self.num_classes,
                                   average="micro")

    # -- training --------------------------------------------------------
    def training_step(self, batch: Data, batch_idx: int) -> Tensor:
        with self._metered():
            out = self.model(batch.x, batch.edge_index)
        if hasattr(batch, "batch_size"):  # NeighborLoader: seeds come first
            out, y = out[:batch.batch_size], batch.y[:batch.batch_size]
        else:
            out, y = out[batch.train_mask], batch.y[batch.train_mask]
        loss = F.cross_entropy(out, y)
        loss = self._add_penalty(loss, self.model.stats)
        self._log("train_loss", F.cross_entropy(out.detach(), y))
        self._log("train_acc", self._accuracy(out.detach(), y))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # the backward fields are filled by now
        self._log_backward(self.model.stats)

    # -- evaluation on the whole graph ------------------------------------
    def _evaluate(self, batch: Data, stage: str) -> None:
        out = self.model(batch.x, batch.edge_index)
        for split in ("val", "test"):
            mask = batch[f"{split}_mask"]
            self._log(f"{split}_acc", self._accuracy(out[mask], batch.y[mask]))
        if stage == "val":
            mask = batch.val_mask
            self._log("val_loss", F.cross_entropy(out[mask], batch.y[mask]))

    def validation_step(self, batch: Data, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Data, batch_idx: int) -> None:
        self._evaluate(batch, "test")
