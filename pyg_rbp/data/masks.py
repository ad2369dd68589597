"""Random train / validation / test node masks."""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor


def random_masks(n: int, train: float, val: float,
                 gen: torch.Generator) -> Dict[str, Tensor]:
    """``train_mask``, ``val_mask`` and ``test_mask`` over ``n`` nodes: one
    permutation drawn from ``gen``; the first ``max(1, round(train n))``
    nodes train, the next ``round(val n)`` validate, the rest test."""
    perm = torch.randperm(n, generator=gen)
    n_train, n_val = max(1, round(train * n)), round(val * n)
    masks = {}
    for name, idx in (("train_mask", perm[:n_train]),
                      ("val_mask", perm[n_train:n_train + n_val]),
                      ("test_mask", perm[n_train + n_val:])):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[idx] = True
        masks[name] = mask
    return masks
