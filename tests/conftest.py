"""Shared test set-up: thread count, the device fixture, small graphs."""
from __future__ import annotations

import os
from typing import List

import pytest
import torch

# Tests run in one process on a 2-core machine: use the cores we have, no more.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DEVICES: List[str] = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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
