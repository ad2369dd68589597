"""The plain-torch neighbour sampler."""
from __future__ import annotations

import torch
from torch_geometric.data import Data

from pyg_rbp.data.sampling import NeighborSampler, neighbor_loader
from tests.conftest import random_graph


def _data(n: int = 60, e: int = 400) -> Data:
    return Data(x=torch.randn(n, 3), y=torch.arange(n),
                edge_index=random_graph(n, e, seed=1))


def test_subgraph_is_a_sample_of_the_graph() -> None:
    data = _data()
    sampler = NeighborSampler(data, [3, 2])
    seeds = torch.tensor([5, 7, 11])
    sub = sampler(list(seeds))
    assert sub.batch_size == 3
    assert torch.equal(sub.n_id[:3], seeds)
    assert sub.n_id.unique().numel() == sub.n_id.numel()
    assert torch.equal(sub.y, sub.n_id)  # features/labels follow n_id
    original = set(map(tuple, data.edge_index.t().tolist()))
    glob = sub.n_id[sub.edge_index]
    assert all(tuple(e) in original for e in glob.t().tolist())
    # hop 1: at most 3 sampled in-edges per seed, all of them when fewer
    for s in seeds.tolist():
        into = int((glob[1] == s).sum())
        assert into == min(3, int((data.edge_index[1] == s).sum()))


def test_all_neighbours_and_sampling_is_random() -> None:
    data = _data()
    full = NeighborSampler(data, [-1])(list(torch.tensor([0])))
    assert int((full.edge_index[1] == 0).sum()) == \
        int((data.edge_index[1] == 0).sum())
    a = NeighborSampler(data, [2])(list(torch.arange(10)))
    b = NeighborSampler(data, [2])(list(torch.arange(10)))
    assert not torch.equal(a.n_id, b.n_id) or \
        not torch.equal(a.edge_index, b.edge_index)


def test_loader_covers_every_seed_once() -> None:
    data = _data()
    nodes = torch.arange(0, 60, 2)
    seen = []
    for batch in neighbor_loader(data, nodes, [4], batch_size=7):
        seen.append(batch.n_id[:batch.batch_size])
    assert torch.equal(torch.cat(seen).sort().values, nodes)
