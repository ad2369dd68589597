"""SavedTensorMeter: the total saved and the most held at once."""
from __future__ import annotations

import torch

from pyg_rbp.utils import SavedTensorMeter


def test_peak_counts_what_is_held_at_once_total_counts_everything() -> None:
    x = torch.randn(1000, 100, requires_grad=True)
    one = 1000 * 100 * 4  # tanh saves its output
    with SavedTensorMeter(track_peak=True) as meter:
        for _ in range(5):  # graphs built and freed inside
            (x * 2).tanh().sum().backward()
        kept = [(x * 3).tanh().sum() for _ in range(2)]  # held together
    assert meter.bytes == 7 * one
    assert meter.peak_bytes == 2 * one
    sum(kept).backward()  # the held graphs still work
    assert x.grad is not None


def test_peak_tracking_is_opt_in() -> None:
    """Without track_peak the meter hands autograd the tensors themselves
    (no wrapper, no finalizer on the training path) and counts the total."""
    x = torch.randn(100, 10, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.tanh().sum()
    assert meter.bytes == 100 * 10 * 4 and meter.peak_bytes == 0
    y.backward()
    assert x.grad is not None
