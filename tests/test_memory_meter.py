"""SavedTensorMeter: the total saved and the most held at once."""
from __future__ import annotations

import torch

from pyg_rbp.utils import SavedTensorMeter


def test_peak_counts_what_is_held_at_once_total_counts_everything() -> None:
    x = torch.randn(1000, 100, requires_grad=True)
    one = 1000 * 100 * 4  # tanh saves its output
    with SavedTensorMeter() as meter:
        for _ in range(5):  # graphs built and freed inside
            (x * 2).tanh().sum().backward()
        kept = [(x * 3).tanh().sum() for _ in range(2)]  # held together
    assert meter.bytes == 7 * one
    assert meter.peak_bytes == 2 * one
    sum(kept).backward()  # the held graphs still work
    assert x.grad is not None
