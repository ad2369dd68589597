"""Run by tests/lightning/test_ddp.py: 2-process CPU DDP (gloo) training.

Lightning's 'ddp' launcher starts this script again for rank 1; each rank
writes its final weights, its synchronised metrics and its training nodes.

    python tests/lightning/ddp_worker.py OUT_DIR DATA_ROOT
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pyg_rbp.lightning import NodeClassificationModule, NodeDataModule  # noqa
from tests.lightning.ddp_common import save_rank  # noqa: E402


def main(out_dir: str, data_root: str) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)  # two processes on two cores
    pl.seed_everything(0, workers=True, verbose=False)
    dm = NodeDataModule("Cora", data_root, loader="neighbor", batch_size=35,
                        num_neighbors=(5, 5))
    module = NodeClassificationModule(dm.num_features, dm.num_classes,
                                      hidden_channels=16, num_layers=8,
                                      backward_steps=4)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp",
                         max_epochs=2, use_distributed_sampler=False,
                         logger=False, enable_checkpointing=False,
                         enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, dm)
    save_rank(trainer, module, out_dir,
              train_nodes=dm.train_nodes(trainer.global_rank,
                                         trainer.world_size).tolist(),
              batches=len(dm.train_dataloader()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
