r"""The chains benchmark of implicit GNNs (IGNN, NeurIPS 2020; EIGNN, MIGNN).

``classes`` x ``chains_per_class`` chains, each a path of ``length`` nodes.
Every node of a chain carries the chain's class as its label, but only the
head node (the first) sees it: its features are the class one-hot in the
first ``classes`` of ``num_features`` dimensions, and every other feature of
every node is zero (plus optional Gaussian noise). Edges run
:math:`i \to i+1` (``directed=True``: information flows from the head down
the chain, so node :math:`L-1` needs :math:`L-1` hops to learn its label) or
both ways. The split draws 5 % / 10 % / 85 % of the nodes for training /
validation / test (EIGNN's), per seed.
"""
from __future__ import annotations

import torch
from torch_geometric.data import Data

from .._checks import check_int
from .masks import random_masks


def chains(classes: int = 2, chains_per_class: int = 20, length: int = 10,
           num_features: int = 100, directed: bool = True,
           feature_noise: float = 0.0, train: float = 0.05, val: float = 0.10,
           seed: int = 0) -> Data:
    """Generate the chains dataset as one PyG ``Data``.

    Args:
        classes: Number of classes :math:`c` (at most ``num_features``).
        chains_per_class: Chains per class. (default: 20)
        length: Nodes per chain :math:`L`. (default: 10)
        num_features: Feature size. (default: 100)
        directed: Edges :math:`i \\to i+1` only, else both ways.
        feature_noise: Standard deviation of Gaussian noise added to every
            feature of every node. (default: 0)
        train: Fraction of nodes for training. (default: 0.05)
        val: Fraction of nodes for validation. (default: 0.10)
        seed: Seed of the split and the noise (own generator; the global
            RNG is left alone).

    Returns:
        ``Data`` with ``x`` ``[N, num_features]``, ``edge_index``, ``y``,
        ``train_mask``/``val_mask``/``test_mask``, ``chain`` (each node's
        chain), ``position`` (its distance from the head),
        ``num_classes`` and ``length``.
    """
    check_int("classes", classes, 2)
    check_int("chains_per_class", chains_per_class, 1)
    check_int("length", length, 1)
    check_int("num_features", num_features, 1)
    check_int("seed", seed, 0)
    if classes > num_features:
        raise ValueError(f"'classes' must be at most num_features="
                         f"{num_features} (got {classes})")
    if feature_noise < 0:
        raise ValueError(f"'feature_noise' must be >= 0 (got {feature_noise})")
    if not (0 < train < 1 and 0 <= val < 1 and train + val < 1):
        raise ValueError(f"'train' and 'val' must be fractions with "
                         f"train + val < 1 (got {train}, {val})")
    gen = torch.Generator().manual_seed(seed)
    num_chains = classes * chains_per_class
    n = num_chains * length
    chain = torch.arange(num_chains).repeat_interleave(length)
    position = torch.arange(length).repeat(num_chains)
    y = chain // chains_per_class
    heads = torch.arange(num_chains) * length
    x = torch.zeros(n, num_features)
    x[heads, y[heads]] = 1.0
    if feature_noise > 0:
        x += feature_noise * torch.randn(n, num_features, generator=gen)
    src = torch.arange(n)[position < length - 1]
    edge_index = torch.stack([src, src + 1])
    if not directed:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    masks = random_masks(n, train, val, gen)
    data = Data(x=x, edge_index=edge_index, y=y, chain=chain,
                position=position, **masks)
    data.num_classes = classes
    data.length = length
    return data
