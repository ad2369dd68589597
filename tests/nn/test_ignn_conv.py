"""IGNNConv's spectral bound: exact against a dense eigensolve, computed
once per graph (one host synchronisation), never confused between graphs."""
from __future__ import annotations

import pytest
import torch

import pyg_rbp.nn.ignn_conv as ignn
from pyg_rbp.nn import IGNNConv

from ..conftest import random_graph


def test_spectral_radius_matches_dense_eigenvalues() -> None:
    ei = random_graph(25, 90)
    conv = IGNNConv(3, 4)
    adj = conv.normalized_adjacency(ei, 25, torch.float64)
    dense = adj.to_dense()
    expected = float(torch.linalg.eigvals(dense).abs().max())
    assert abs(ignn.spectral_radius(adj) - expected) < 1e-6
    empty = torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long),
                                    torch.zeros(0), (4, 4))
    assert ignn.spectral_radius(empty) == 0.0


@pytest.mark.slow
def test_bound_is_cached_per_graph(monkeypatch) -> None:
    calls = {"n": 0}
    real = ignn.spectral_radius

    def counting(adj, iters=500):
        calls["n"] += 1
        return real(adj, iters)

    monkeypatch.setattr(ignn, "spectral_radius", counting)
    conv = IGNNConv(3, 4, num_layers=50)
    x = torch.randn(20, 3)
    ei = random_graph(20, 60, seed=1)
    for _ in range(3):
        conv(x, ei)
    assert calls["n"] == 1
    rho = conv._rho
    other = random_graph(20, 60, seed=2)  # same shape, other edges
    conv(x, other)
    assert calls["n"] == 2 and conv._rho != rho
    ei[0, 0] = (ei[0, 0] + 1) % 20  # changed in place
    conv(x, ei)
    assert calls["n"] == 3
