"""What the two-process CPU DDP tests share: launching a worker script, the
files each rank writes, and the checks that DDP really synchronised.

A worker (``ddp_worker.py``, ``graph_ddp_worker.py``) trains with
``devices=2, strategy='ddp'`` and calls :func:`save_rank`; the test calls
:func:`run_two_ranks` and :func:`assert_synchronised`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List

import torch


def save_rank(trainer: Any, module: torch.nn.Module, out_dir: str,
              **extra: Any) -> None:
    """Write this rank's weights and its synchronised metrics (plus
    ``extra``) as ``rank<r>.pt`` and ``rank<r>.json``."""
    rank = trainer.global_rank
    out = Path(out_dir)
    torch.save(module.state_dict(), out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world_size": trainer.world_size,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        **extra}))


def run_two_ranks(worker: Path, tmp_path: Path, data_root: str
                  ) -> List[Dict[str, Any]]:
    """Run ``worker OUT_DIR DATA_ROOT`` (Lightning starts rank 1 itself) and
    return both ranks' JSON records."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYG_RBP_DATA_ROOT", None)
    run = subprocess.run([sys.executable, str(worker), str(tmp_path),
                          data_root], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text())
            for r in range(2)]
    assert [i["world_size"] for i in info] == [2, 2]
    return info


def assert_synchronised(info: List[Dict[str, Any]], tmp_path: Path,
                        metrics: Iterable[str]) -> None:
    """Metrics reduced across ranks (both report the same numbers) and
    gradients all-reduced (identical weights on both ranks)."""
    for key in metrics:
        assert info[0]["metrics"][key] == info[1]["metrics"][key], key
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
