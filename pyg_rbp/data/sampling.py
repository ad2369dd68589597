"""Neighbour-sampled subgraphs in plain torch.

PyG's ``NeighborLoader`` needs ``pyg-lib`` or ``torch-sparse``, and neither
has a wheel for every torch release. This sampler needs neither: for a batch
of seed nodes it draws, hop by hop, up to ``k`` incoming neighbours of every
frontier node uniformly without replacement, and returns the induced
message-passing subgraph with the seed nodes first, in the format
``NeighborLoader`` yields (``batch_size``, ``n_id``).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch_geometric.data import Data


class NeighborSampler:
    """Collate function: seed node ids -> sampled subgraph ``Data``.

    Args:
        data: The whole graph (``x``, ``edge_index``, ``y``, masks).
        num_neighbors: Neighbours per hop; ``-1`` takes all.
    """

    def __init__(self, data: Data, num_neighbors: Sequence[int]) -> None:
        self.data = data
        self.num_neighbors = list(num_neighbors)
        src, dst = data.edge_index
        order = torch.argsort(dst, stable=True)
        self.src = src[order]  # incoming edges grouped by target
        self.edge_ids = order
        counts = torch.bincount(dst, minlength=data.num_nodes)
        self.ptr = torch.zeros(data.num_nodes + 1, dtype=torch.long)
        self.ptr[1:] = torch.cumsum(counts, 0)

    def _sample_hop(self, frontier: Tensor, k: int) -> Tensor:
        """Positions (into ``self.src``) of the sampled incoming edges."""
        start, deg = self.ptr[frontier], self.ptr[frontier + 1] - \
            self.ptr[frontier]
        owner = torch.repeat_interleave(torch.arange(frontier.numel()), deg)
        offset = torch.arange(owner.numel()) - \
            torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
        pos = start[owner] + offset
        if k < 0 or pos.numel() == 0:
            return pos
        # Random key per edge; keep the k smallest keys within each node.
        key = torch.rand(pos.numel())
        perm = torch.argsort(owner.double() + key)
        owner, pos = owner[perm], pos[perm]
        rank = torch.arange(owner.numel()) - \
            torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
        return pos[rank < k]

    def __call__(self, seeds: List[Tensor]) -> Data:
        seeds = torch.stack(seeds) if isinstance(seeds, list) else seeds
        seeds = seeds.view(-1).long()
        nodes = [seeds]
        seen = torch.zeros(self.data.num_nodes, dtype=torch.bool)
        seen[seeds] = True
        frontier = seeds
        positions = []
        for k in self.num_neighbors:
            pos = self._sample_hop(frontier, k)
            positions.append(pos)
            new = torch.unique(self.src[pos])
            new = new[~seen[new]]
            seen[new] = True
            nodes.append(new)
            frontier = new
        n_id = torch.cat(nodes)
        local = torch.full((self.data.num_nodes, ), -1, dtype=torch.long)
        local[n_id] = torch.arange(n_id.numel())
        pos = torch.unique(torch.cat(positions)) if positions else \
            torch.empty(0, dtype=torch.long)
        edge_index = self.data.edge_index[:, self.edge_ids[pos]]
        out = Data(x=self.data.x[n_id], y=self.data.y[n_id],
                   edge_index=local[edge_index])
        out.n_id = n_id
        out.batch_size = int(seeds.numel())
        return out


def neighbor_loader(data: Data, input_nodes: Tensor,
                    num_neighbors: Sequence[int], batch_size: int,
                    shuffle: bool = True) -> DataLoader:
    """A ``DataLoader`` of neighbour-sampled subgraphs around
    ``input_nodes``, ``batch_size`` seeds at a time."""
    return DataLoader(input_nodes.view(-1), batch_size=batch_size,
                      shuffle=shuffle,
                      collate_fn=NeighborSampler(data, num_neighbors))
