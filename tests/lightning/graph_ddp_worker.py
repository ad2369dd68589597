"""Run by tests/lightning/test_graph_training.py: 2-process CPU DDP (gloo)
graph classification on one fold of MUTAG.

Lightning's 'ddp' launcher starts this script again for rank 1; each rank
writes its final weights, its synchronised metrics, how many training
graphs it saw, how many graphs of each validation loader (val, test part) it
scored in the last epoch, and the accuracies of the final weights computed
in-process over the whole splits (the oracle for the synchronised ones).

    python tests/lightning/graph_ddp_worker.py OUT_DIR DATA_ROOT
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pyg_rbp.lightning import (GraphClassificationModule,  # noqa: E402
                               GraphDataModule)
from tests.lightning.ddp_common import save_rank  # noqa: E402


class CountGraphs(Callback):
    def __init__(self) -> None:
        self.graphs = 0
        self.eval_graphs = [0, 0]  # validation loaders: val, test part

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0:
            self.graphs += batch.num_graphs

    def on_validation_epoch_start(self, trainer, module) -> None:
        self.eval_graphs = [0, 0]

    def on_validation_batch_start(self, trainer, module, batch, batch_idx,
                                  dataloader_idx=0) -> None:
        self.eval_graphs[dataloader_idx] += batch.num_graphs


def exact_acc(module, dm, part: int) -> float:
    """The final weights' accuracy over a whole split, in this process
    alone."""
    from torch_geometric.loader import DataLoader
    subset = dm._load()[dm.split[part]]
    correct = 0
    module.eval()
    with torch.no_grad():
        for b in DataLoader(subset, batch_size=7):
            correct += int((module(b).argmax(-1) == b.y).sum())
    return correct / len(subset)


def main(out_dir: str, data_root: str) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)  # two processes on two cores
    pl.seed_everything(0, workers=True, verbose=False)
    dm = GraphDataModule("MUTAG", data_root, fold=0, batch_size=16)
    module = GraphClassificationModule(dm.num_features, dm.num_classes,
                                       hidden_channels=16,
                                       num_edge_types=dm.num_edge_types,
                                       num_layers=8, backward_steps=4)
    count = CountGraphs()
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp",
                         max_epochs=2, logger=False,
                         enable_checkpointing=False,
                         enable_progress_bar=False, callbacks=[count],
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, dm)
    save_rank(trainer, module, out_dir, graphs_seen=count.graphs,
              train_graphs=len(dm.split[0]),
              eval_graphs=[len(dm.split[1]), len(dm.split[2])],
              eval_graphs_seen=count.eval_graphs,
              val_acc_exact=exact_acc(module, dm, 1),
              test_acc_exact=exact_acc(module, dm, 2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
