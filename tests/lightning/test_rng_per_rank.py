"""Exact resumption under DDP: every rank's random states go into the
checkpoint, and each rank gets its own back (two gloo processes)."""
from __future__ import annotations

import pytest

import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyg_rbp.lightning.base import RBPLightningModule

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow


def _draws() -> list:
    return torch.rand(3).tolist() + [random.random(),
                                     float(np.random.rand())]


def _worker(rank: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/store",
                            rank=rank, world_size=2)
    torch.manual_seed(100 + rank)
    random.seed(rank)
    np.random.seed(rank)
    module = RBPLightningModule()
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)  # a collective: every rank calls it
    expected = _draws()
    torch.manual_seed(7)  # training goes on and moves the states
    random.seed(7)
    np.random.seed(7)
    module.on_load_checkpoint(ckpt)
    got = _draws()
    if rank == 0:
        torch.save(ckpt, f"{out}/ckpt.pt")
    Path(out, f"rank{rank}.json").write_text(json.dumps(
        {"expected": expected, "got": got,
         "stored": len(ckpt["pyg_rbp_rng_per_rank"])}))
    dist.destroy_process_group()


def test_each_rank_resumes_its_own_random_states(tmp_path) -> None:
    mp.spawn(_worker, args=(str(tmp_path), ), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text())
             for r in range(2)]
    for r in ranks:
        assert r["stored"] == 2
        assert r["got"] == r["expected"]
    # the ranks' streams differ: one shared state would make them equal
    assert ranks[0]["expected"] != ranks[1]["expected"]
    # the checkpoint loads as Lightning loads it, and a single process
    # (another world size) falls back to rank 0's states
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    torch.manual_seed(7)
    RBPLightningModule().on_load_checkpoint(ckpt)
    assert _draws() == ranks[0]["expected"]
