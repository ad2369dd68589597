"""Two-process DDP on CPU (gloo): ranks split the training nodes, end with
identical weights and log synchronised metrics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import needs_data, shared_data_root

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@needs_data
def test_ddp_two_cpu_processes(tmp_path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYG_RBP_DATA_ROOT", None)
    run = subprocess.run(
        [sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path),
         str(shared_data_root())], env=env, capture_output=True, text=True,
        timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text())
            for r in range(2)]
    assert [i["world_size"] for i in info] == [2, 2]
    # the ranks trained on disjoint halves of Cora's 140 training nodes
    a, b = (set(i["train_nodes"]) for i in info)
    assert len(a) == len(b) == 70 and not a & b
    assert info[0]["batches"] == info[1]["batches"] == 2
    # metrics are reduced across ranks: both ranks report the same numbers
    for key in ("train_loss", "train_acc", "fwd_steps", "val_acc"):
        assert info[0]["metrics"][key] == info[1]["metrics"][key], key
    # gradients were all-reduced: identical weights on both ranks
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
