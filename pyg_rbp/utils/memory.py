"""Counting the memory autograd keeps for the backward pass."""
from __future__ import annotations

import weakref
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


class _Held:
    """A saved tensor, held by autograd's graph in its place, so that the
    meter sees when the graph lets it go."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


def _unpack(held: Any) -> Tensor:
    return held.tensor if isinstance(held, _Held) else held


class SavedTensorMeter:
    """Context manager: the bytes autograd saves for backward inside it.

    ``bytes`` is the total saved inside the context. With
    ``track_peak=True``, ``peak_bytes`` is the most held at once (graphs
    built and freed inside, such as the temporary graph of a gradient
    taken under ``torch.enable_grad`` in a no-grad loop, count in
    ``bytes`` but leave ``peak_bytes``), the figure to compare methods by
    where such graphs occur; it costs a finalizer per saved tensor, so it
    is off by default (training steps measure ``bytes`` only).

    Example:
        >>> with SavedTensorMeter(track_peak=True) as meter:
        ...     loss = model(x).sum()
        >>> meter.bytes, meter.peak_bytes
    """

    def __init__(self, track_peak: bool = False) -> None:
        self.bytes = 0
        self.peak_bytes = 0
        self.track_peak = track_peak
        self._live = 0
        self._hooks: Any = None

    def _release(self, size: int) -> None:
        self._live -= size

    def _pack(self, t: Tensor) -> Any:
        size = tensor_bytes(t)
        self.bytes += size
        if not self.track_peak:
            return t
        self._live += size
        self.peak_bytes = max(self.peak_bytes, self._live)
        held = _Held(t)
        weakref.finalize(held, self._release, size)
        return held

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(
            self._pack, _unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)
