"""Counting the memory autograd keeps for the backward pass."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def tensor_bytes(t: Tensor) -> int:
    """Bytes a tensor's storage holds: values and indices for sparse
    layouts (``numel()`` of a sparse ``[N, N]`` matrix is ``N * N``)."""
    if t.layout == torch.strided:
        return t.numel() * t.element_size()
    if t.layout == torch.sparse_coo:
        return tensor_bytes(t._values()) + tensor_bytes(t._indices())
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return (tensor_bytes(t.values()) + tensor_bytes(t.crow_indices())
                + tensor_bytes(t.col_indices()))
    if t.layout in (torch.sparse_csc, torch.sparse_bsc):
        return (tensor_bytes(t.values()) + tensor_bytes(t.ccol_indices())
                + tensor_bytes(t.row_indices()))
    return t.numel() * t.element_size()


class SavedTensorMeter:
    """Context manager: the bytes autograd saves for backward inside it.

    Example:
        >>> with SavedTensorMeter() as meter:
        ...     loss = model(x).sum()
        >>> meter.bytes
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._hooks: Any = None

    def _pack(self, t: Tensor) -> Tensor:
        self.bytes += tensor_bytes(t)
        return t

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(
            self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)
