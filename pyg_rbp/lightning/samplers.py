"""Evaluation under DDP that sees every graph exactly once.

Lightning gives a validation or test loader a :class:`DistributedSampler`,
which pads the dataset to a multiple of the world size by repeating its
first items: with 19 validation graphs on 2 ranks, one graph counts twice
and the accuracy that picks the epoch is not the accuracy of the split.
:class:`UnpaddedDistributedSampler` gives rank :math:`r` of :math:`R` the
items :math:`r, r + R, r + 2R, \\dots` once each (ranks may then hold one
item more or less); the modules accumulate sums and counts across ranks
(:class:`torchmetrics.MeanMetric`), so the metric is exact.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sized

from torch.utils.data.distributed import DistributedSampler


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``rank`` of ``num_replicas`` gets items ``rank::num_replicas``,
    in order, each exactly once.

    A :class:`DistributedSampler` subclass, so Lightning keeps it instead of
    injecting its own padding one.

    Args:
        dataset (Sized): What the loader draws from.
        num_replicas (int): The world size.
        rank (int): This process's global rank.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank,
                         shuffle=False, drop_last=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def evaluation_sampler(dataset: Sized, trainer: Optional[Any]
                       ) -> Optional[UnpaddedDistributedSampler]:
    """The sampler of a validation or test loader: unpadded with more than
    one rank (``trainer.world_size > 1``), else ``None`` (the loader's
    own, in order)."""
    if trainer is None or trainer.world_size <= 1:
        return None
    return UnpaddedDistributedSampler(dataset, trainer.world_size,
                                      trainer.global_rank)
