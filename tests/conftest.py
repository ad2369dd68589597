"""Shared test set-up: thread count, the device fixture, small graphs."""
from __future__ import annotations

import os
from typing import List

import pytest
import torch

# Tests run in one process on a 2-core machine: use the cores we have, no more
# (PYG_RBP_TEST_THREADS overrides, e.g. 1 beside a running benchmark).
torch.set_num_threads(int(os.environ.get("PYG_RBP_TEST_THREADS", 0))
                      or max(1, min(2, os.cpu_count() or 1)))

DEVICES: List[str] = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

#: The full suite (the slow tier too: whole trainings, DDP, subprocesses,
#: finite differences) runs with PYG_RBP_FULL_TESTS=1, as CI sets it;
#: ``python -m pytest -q`` alone runs the fast tier.
FULL_TESTS = os.environ.get("PYG_RBP_FULL_TESTS", "") == "1"


def pytest_collection_modifyitems(config: pytest.Config,
                                  items: List[pytest.Item]) -> None:
    if FULL_TESTS:
        return
    skip = pytest.mark.skip(reason="slow tier: set PYG_RBP_FULL_TESTS=1 "
                                   "(CI does) to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every test taking ``device`` runs on the CPU and, if present, CUDA."""
    return torch.device(request.param)


def random_graph(num_nodes: int, num_edges: int, seed: int = 0) -> torch.Tensor:
    """A random directed ``edge_index`` without self-loops."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes, (num_edges, ), generator=gen)
    off = torch.randint(1, num_nodes, (num_edges, ), generator=gen)
    return torch.stack([src, (src + off) % num_nodes])


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state, whatever ran before."""
    torch.manual_seed(12345)


def shared_data_root():
    """The read-only data folder beside the checkout (``../shared/data``),
    or ``$PYG_RBP_TEST_DATA``; ``None`` when neither exists."""
    from pathlib import Path
    env = os.environ.get("PYG_RBP_TEST_DATA")
    root = Path(env) if env else \
        Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return root if (root / "Planetoid" / "Cora" / "raw").is_dir() else None


needs_data = pytest.mark.skipif(shared_data_root() is None,
                                reason="../shared/data (Planetoid) not found")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private user cache, so tests never write to ~/.cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    monkeypatch.delenv("PYG_RBP_DATA_ROOT", raising=False)
    return path / "pyg_rbp"
