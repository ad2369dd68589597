"""Two-process DDP on CPU (gloo): ranks split the training nodes, end with
identical weights and log synchronised metrics."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import needs_data, shared_data_root
from tests.lightning.ddp_common import assert_synchronised, run_two_ranks

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@needs_data
def test_ddp_two_cpu_processes(tmp_path) -> None:
    info = run_two_ranks(HERE / "ddp_worker.py", tmp_path,
                         str(shared_data_root()))
    # the ranks trained on disjoint halves of Cora's 140 training nodes
    a, b = (set(i["train_nodes"]) for i in info)
    assert len(a) == len(b) == 70 and not a & b
    assert info[0]["batches"] == info[1]["batches"] == 2
    assert_synchronised(info, tmp_path,
                        ("train_loss", "train_acc", "fwd_steps", "val_acc"))
