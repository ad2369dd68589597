"""Fixtures shared by the layer tests."""
from __future__ import annotations

from typing import Dict

import pytest
import torch

import pyg_rbp.nn.adjacency as adjacency


@pytest.fixture
def coo_builds(monkeypatch) -> Dict[str, int]:
    """Counts the sparse matrices the adjacency code builds (``["n"]``):
    the graph-dependent work that must happen once per call, not per step."""
    calls = {"n": 0}
    real = torch.sparse_coo_tensor

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(adjacency.torch, "sparse_coo_tensor", counting)
    return calls
