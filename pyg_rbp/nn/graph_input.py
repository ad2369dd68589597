"""Graph inputs of the layers, checked once per call at the API boundary.

:func:`standardise_graph` turns every adjacency form PyG users pass
(``[2, E]`` indices, ``torch.sparse``, ``SparseTensor``) into one checked
``[2, E]`` form; :func:`check_edge_type` checks typed edges against it.
What the layers then build from a checked graph (the aggregation operator)
lives in :mod:`pyg_rbp.nn.adjacency`.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, to_edge_index

from .._checks import check_finite, check_float_tensor


def _check_values(name: str, t: Tensor, device: torch.device, owner: str,
                  upper: int, what: str) -> None:
    """``t`` on ``device`` (that of ``owner``) with values in ``[0, upper)``
    (``what`` says so in the message)."""
    if t.device != device:
        raise ValueError(f"'{name}' must be on the device of {owner} "
                         f"({device}) (got {t.device})")
    if t.numel() > 0:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= upper:
            raise ValueError(f"'{name}' must hold {what} (got values in "
                             f"[{lo}, {hi}])")


def _sparse_edges(adj: Tensor) -> Tuple[Tensor, Tensor]:
    """``(index [2, E], values [E])`` of a torch.sparse adjacency, the
    caller's tensor left as it was. COO: :meth:`~torch.Tensor.coalesce`
    (a new tensor, duplicates summed, as PyG reads them; differentiable in
    the values), where PyG's ``to_edge_index`` would flag the caller's
    tensor coalesced in place without summing (and has no derivative)."""
    if adj.layout == torch.sparse_coo:
        adj = adj.coalesce()
        return adj.indices().long(), adj.values()
    return to_edge_index(adj)


def standardise_graph(
    edge_index: Any,
    edge_weight: Optional[Tensor],
    num_nodes: int,
    device: torch.device,
    owner: str,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Check ``edge_index`` and ``edge_weight`` and return ``(edge_index, w)``.

    ``edge_index`` may be a ``[2, E]`` integer tensor (sources in row 0,
    targets in row 1), a :obj:`torch.sparse` adjacency ``adj_t`` of shape
    ``[N, N]`` (rows are targets, as in PyG) or a
    :class:`torch_sparse.SparseTensor` ``adj_t``. The result is always the
    ``[2, E]`` long form with the edge values (if any) as weights.
    """
    if isinstance(edge_index, SparseTensor):
        if edge_weight is not None:
            raise ValueError(f"'{owner}' takes edge weights from the values of "
                             f"a SparseTensor adjacency; pass "
                             f"edge_weight=None (got a tensor)")
        if tuple(edge_index.sizes()) != (num_nodes, num_nodes):
            raise ValueError(
                f"'edge_index' (SparseTensor) must have size [{num_nodes}, "
                f"{num_nodes}] for {num_nodes} nodes "
                f"(got {list(edge_index.sizes())})")
        row, col, value = edge_index.coo()
        return torch.stack([col, row]).to(device), \
            None if value is None else value.to(device)
    if isinstance(edge_index, Tensor) and is_torch_sparse_tensor(edge_index):
        if edge_weight is not None:
            raise ValueError(f"'{owner}' takes edge weights from the values of "
                             f"a torch.sparse adjacency; pass "
                             f"edge_weight=None (got a tensor)")
        if tuple(edge_index.shape) != (num_nodes, num_nodes):
            raise ValueError(
                f"'edge_index' (torch.sparse) must have shape [{num_nodes}, "
                f"{num_nodes}] for {num_nodes} nodes "
                f"(got {list(edge_index.shape)})")
        index, value = _sparse_edges(edge_index)
        return index.flip(0).to(device), value.to(device)
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'edge_index' must be a torch.Tensor of shape [2, E], "
                        f"a torch.sparse tensor or a SparseTensor "
                        f"(got {type(edge_index).__name__})")
    if edge_index.dtype not in (torch.int64, torch.int32, torch.int16,
                                torch.uint8, torch.int8):
        raise TypeError(f"'edge_index' must have an integer dtype "
                        f"(got {edge_index.dtype})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, E] "
                         f"(got {list(edge_index.shape)})")
    _check_values("edge_index", edge_index, device, "'x'", num_nodes,
                  f"node indices in [0, {num_nodes}) for {num_nodes} nodes")
    if edge_weight is not None:
        check_float_tensor("edge_weight", edge_weight)
        if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1):
            raise ValueError(
                f"'edge_weight' must have shape [{edge_index.size(1)}] (one "
                f"per edge) (got {list(edge_weight.shape)})")
        check_finite("edge_weight", edge_weight)
    return edge_index.long(), edge_weight


def check_edge_type(edge_type: Any, edge_index: Any, num_types: int,
                    owner: str) -> Optional[Tensor]:
    """Check ``edge_type`` against ``edge_index`` and ``num_types``.

    Returns ``edge_type`` as a long tensor, or ``None`` when it is not needed
    (``num_types == 1`` and none given). Typed edges need the ``[2, E]``
    tensor form of ``edge_index``: a sparse adjacency keeps its entries in
    its own order, which says nothing about the order of ``edge_type``.
    """
    if edge_type is None:
        if num_types > 1:
            raise ValueError(
                f"'{owner}' has num_edge_types={num_types}; pass edge_type, "
                f"an integer tensor [E] with values in [0, {num_types}) "
                f"(got edge_type=None)")
        return None
    if not isinstance(edge_type, Tensor):
        raise TypeError(f"'edge_type' must be a torch.Tensor of integers "
                        f"(got {type(edge_type).__name__})")
    if edge_type.is_floating_point() or edge_type.is_complex() or \
            edge_type.dtype == torch.bool:
        raise TypeError(f"'edge_type' must have an integer dtype "
                        f"(got {edge_type.dtype})")
    if not isinstance(edge_index, Tensor) or edge_index.is_sparse or \
            edge_index.layout != torch.strided:
        raise ValueError(
            f"'{owner}' takes edge_type only with edge_index as a [2, E] "
            f"tensor (got {type(edge_index).__name__} with layout "
            f"{getattr(edge_index, 'layout', None)}); a sparse adjacency's "
            f"entries have no order to match edge_type")
    num_edges = edge_index.size(1) if edge_index.dim() == 2 else -1
    if edge_type.dim() != 1 or edge_type.numel() != num_edges:
        raise ValueError(f"'edge_type' must have shape [{num_edges}] (one per "
                         f"edge) (got {list(edge_type.shape)})")
    _check_values("edge_type", edge_type, edge_index.device, "'edge_index'",
                  num_types, f"values in [0, {num_types}) for "
                             f"num_edge_types={num_types}")
    return edge_type.long()
