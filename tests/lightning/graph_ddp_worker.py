"""Run by tests/lightning/test_graph_training.py: 2-process CPU DDP (gloo)
graph classification on one fold of MUTAG.

Lightning's 'ddp' launcher starts this script again for rank 1; each rank
writes its final weights, its synchronised metrics and how many training
graphs it saw.

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

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0:
            self.graphs += batch.num_graphs


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
              train_graphs=len(dm.split[0]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
