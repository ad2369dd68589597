"""LightningModule for node classification with an RBP-trained GGNN."""
from __future__ import annotations

import random
from typing import Any, Dict, Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torchmetrics.functional.classification import multiclass_accuracy

from ..models import RBPNodeClassifier
from ..utils import SavedTensorMeter


def _numpy_state_to_plain(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos),
            int(has_gauss), float(cached))


def _numpy_state_from_plain(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


class NodeClassificationModule(pl.LightningModule):
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
        dropout (float, optional): (default: :obj:`0.5`)
        out_propagation (int, optional): Smoothing steps on the logits (see
            :class:`~pyg_rbp.models.RBPNodeClassifier`). (default: :obj:`2`)
        lr (float, optional): Adam's learning rate. (default: :obj:`0.01`)
        weight_decay (float, optional): (default: :obj:`5e-4`)
        jacobian_weight (float, optional): Weight of the Jacobian penalty
            (by default :math:`\sigma_{\max}(J)^2`, see
            :func:`pyg_rbp.rbp`) added to the loss, which keeps the
            propagation contractive so the implicit gradient stays accurate;
            ``0`` switches it off. (default: :obj:`1.0`)
        evaluator (str, optional): An OGB dataset name: score accuracy with
            its :class:`ogb.nodeproppred.Evaluator`. (default: :obj:`None`)
        **conv_kwargs (optional): Options of
            :class:`pyg_rbp.RBPGatedGraphConv` (``num_layers``, ``method``,
            ``tol``, ``solver``, ``backward_steps``, ``backward_tol``,
            ``normalize``).
    """

    def __init__(self, in_channels: int, num_classes: int,
                 hidden_channels: int = 64, input_dropout: float = 0.8,
                 dropout: float = 0.5, out_propagation: int = 2,
                 lr: float = 0.01, weight_decay: float = 5e-4,
                 jacobian_weight: float = 1.0, evaluator: Optional[str] = None,
                 **conv_kwargs: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        conv_kwargs.setdefault("normalize", True)
        if jacobian_weight < 0:
            raise ValueError(f"'jacobian_weight' must be >= 0 "
                             f"(got {jacobian_weight})")
        conv_kwargs.setdefault("jacobian_penalty", "spectral")
        if jacobian_weight == 0:
            conv_kwargs["jacobian_penalty"] = None
        self.jacobian_weight = jacobian_weight
        self.model = RBPNodeClassifier(in_channels, hidden_channels,
                                       num_classes,
                                       input_dropout=input_dropout,
                                       dropout=dropout,
                                       out_propagation=out_propagation,
                                       **conv_kwargs)
        self.num_classes = num_classes
        self._evaluator = None
        if evaluator is not None:
            from ogb.nodeproppred import Evaluator
            self._evaluator = Evaluator(evaluator)
        self.peak_saved_bytes = 0

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

    def _log(self, name: str, value: Any) -> None:
        self.log(name, float(value), on_step=False, on_epoch=True,
                 sync_dist=True, batch_size=1)

    # -- training --------------------------------------------------------
    def training_step(self, batch: Data, batch_idx: int) -> Tensor:
        with SavedTensorMeter() as meter:
            out = self.model(batch.x, batch.edge_index)
        if hasattr(batch, "batch_size"):  # NeighborLoader: seeds come first
            out, y = out[:batch.batch_size], batch.y[:batch.batch_size]
        else:
            out, y = out[batch.train_mask], batch.y[batch.train_mask]
        loss = F.cross_entropy(out, y)
        self.peak_saved_bytes = max(self.peak_saved_bytes, meter.bytes)
        stats = self.model.conv.stats
        if stats.jacobian_penalty is not None:
            self._log("jac_penalty", stats.jacobian_penalty.detach())
            loss = loss + self.jacobian_weight * stats.jacobian_penalty
        self._log("train_loss", F.cross_entropy(out.detach(), y))
        self._log("train_acc", self._accuracy(out.detach(), y))
        self._log("fwd_steps", stats.forward_steps)
        self._log("fwd_residual", stats.forward_residual)
        self._log("saved_mib", meter.bytes / 2**20)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        stats = self.model.conv.stats  # backward fields are filled by now
        if stats is not None and stats.backward_steps is not None:
            self._log("bwd_steps", stats.backward_steps)
            if stats.backward_residual is not None:
                self._log("bwd_residual", stats.backward_residual)

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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)

    # -- exact resumption --------------------------------------------------
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Store the random states, so that a resumed run draws the same
        dropout masks and samples as an uninterrupted one."""
        checkpoint["pyg_rbp_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() else [],
            # Plain types and tensors only: checkpoints load with
            # torch.load(weights_only=True).
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("pyg_rbp_rng")
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(_numpy_state_from_plain(state["numpy"]))
        random.setstate(state["python"])
