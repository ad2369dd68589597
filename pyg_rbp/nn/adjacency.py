"""Graph inputs: checked once per call and turned into an aggregation operator.

Everything in here runs once per layer call, never once per propagation
step: the iterated map only applies the operator this module returns.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, to_edge_index

from .._checks import check_finite
from ..implicit.precision import full_precision

Aggregate = Callable[[Tensor], Tensor]

# torch's notice that CSR support is "beta" says nothing to our users: the CSR
# product we use is tested here. Filtered by its exact text, once.
warnings.filterwarnings("ignore", category=UserWarning,
                        message="Sparse CSR tensor support is in beta state")

#: Aggregations served by one sparse-matrix product per step.
MATRIX_AGGRS = ("add", "sum", "mean")


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
        index, value = to_edge_index(edge_index)
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
    if edge_index.device != device:
        raise ValueError(f"'edge_index' must be on the device of 'x' "
                         f"({device}) (got {edge_index.device})")
    if edge_index.numel() > 0:
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            raise ValueError(
                f"'edge_index' must hold node indices in [0, {num_nodes}) "
                f"for {num_nodes} nodes (got values in [{lo}, {hi}])")
    if edge_weight is not None:
        if not isinstance(edge_weight, Tensor):
            raise TypeError(f"'edge_weight' must be a torch.Tensor "
                            f"(got {type(edge_weight).__name__})")
        if not edge_weight.is_floating_point():
            raise TypeError(f"'edge_weight' must have a floating-point dtype "
                            f"(got {edge_weight.dtype})")
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
    if edge_type.device != edge_index.device:
        raise ValueError(f"'edge_type' must be on the device of 'edge_index' "
                         f"({edge_index.device}) (got {edge_type.device})")
    if edge_type.numel() > 0:
        lo, hi = int(edge_type.min()), int(edge_type.max())
        if lo < 0 or hi >= num_types:
            raise ValueError(
                f"'edge_type' must hold values in [0, {num_types}) for "
                f"num_edge_types={num_types} (got values in [{lo}, {hi}])")
    return edge_type.long()


def _typed_self_loops(edge_index: Tensor, edge_weight: Optional[Tensor],
                      edge_type: Tensor, num_nodes: int, loop_type: int,
                      dtype: torch.dtype
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    """:math:`D^{-1/2}(A + I)D^{-1/2}` for typed edges: a self-loop of type
    ``loop_type`` is appended for every node, and the edge order is kept (so
    the types stay aligned)."""
    loops = torch.arange(num_nodes, device=edge_index.device)
    edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
    edge_type = torch.cat([edge_type, torch.full_like(loops, loop_type)])
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype,
                                 device=edge_index.device)
    else:
        edge_weight = torch.cat([edge_weight.to(dtype), torch.ones(
            num_nodes, dtype=dtype, device=edge_index.device)])
    edge_index, edge_weight = gcn_norm(edge_index, edge_weight, num_nodes,
                                       add_self_loops=False, dtype=dtype)
    return edge_index, edge_weight, edge_type


def build_aggregate(edge_index: Tensor, edge_weight: Optional[Tensor],
                    num_nodes: int, aggr: Any, normalize: bool,
                    dtype: torch.dtype, propagate: Callable[..., Tensor],
                    edge_type: Optional[Tensor] = None,
                    num_types: int = 1) -> Aggregate:
    r"""Return the aggregation of one step.

    Untyped (``num_types == 1``): ``h -> m`` with
    :math:`m_i = \bigoplus_{j \to i} e_{j,i} h_j`, ``h`` of shape
    ``[N, C]``. Typed (``num_types = k > 1``): the input is the state
    already transformed by every type's weight, ``[N, k C]`` (block ``t``
    holds :math:`h \Theta_t`), and
    :math:`m_i = \bigoplus_{j \to i} e_{j,i} (h_j \Theta_{t(j,i)})`.

    For ``'add'``/``'sum'``/``'mean'`` the adjacency is built once as a CSR
    matrix and every step is one sparse-dense product: ``[N, N]``, or for
    types the ``[N, kN]`` matrix with column :math:`jk + t` for an edge
    :math:`j \to i` of type :math:`t`, against the ``[kN, C]`` view of the
    input (see ``benchmarks/typed_edges.py`` for why this layout). With
    ``normalize`` the matrix is :math:`D^{-1/2}(A + I)D^{-1/2}` (for types,
    the self-loops have type ``num_types - 1``, the layer's extra weight).
    Other aggregations, and edge weights that require grad, go through
    ``propagate(edge_index, h, edge_weight, edge_type)`` (the layer's
    gather/scatter message passing) each step.
    """
    typed = num_types > 1
    if normalize:
        if typed:
            edge_index, edge_weight, edge_type = _typed_self_loops(
                edge_index, edge_weight, edge_type, num_nodes, num_types - 1,
                dtype)
        else:
            edge_index, edge_weight = gcn_norm(
                edge_index, edge_weight, num_nodes, add_self_loops=True,
                dtype=dtype)
    if not typed:
        edge_type = None
    needs_edge_grad = edge_weight is not None and edge_weight.requires_grad
    if not isinstance(aggr, str) or aggr not in MATRIX_AGGRS or \
            needs_edge_grad:
        def scatter_aggregate(h: Tensor) -> Tensor:
            return propagate(edge_index, h, edge_weight, edge_type)
        return scatter_aggregate

    if dtype in (torch.float16, torch.bfloat16):  # no such sparse kernels
        dtype = torch.float32
    src, dst = edge_index[0], edge_index[1]
    value = torch.ones(src.numel(), dtype=dtype, device=src.device) \
        if edge_weight is None else edge_weight.detach().to(dtype)
    if aggr == "mean":
        count = torch.zeros(num_nodes, dtype=dtype, device=src.device)
        count.index_add_(0, dst, torch.ones_like(value))
        value = value / count.clamp_min(1)[dst]
    col = src if edge_type is None else src * num_types + edge_type
    # No warnings.catch_warnings() here: changing the filters on every call
    # resets Python's once-per-location registry, so every ConvergenceWarning
    # would print again (the "beta" notice is filtered once, at import).
    adj = torch.sparse_coo_tensor(torch.stack([dst, col]), value,
                                  (num_nodes, num_nodes * num_types),
                                  check_invariants=False).coalesce()
    return SparseMatrix(adj.to_sparse_csr(), groups=num_types)


class SparseMatrix:
    """``h -> A h`` for a constant CSR matrix ``A`` of shape ``[N, g N]``,
    applied to the ``[g N, C]`` view of an ``[N, g C]`` input (``g = groups``,
    1 for an ordinary adjacency). The backward uses a transpose built once
    (on first use) instead of once per product: autograd of ``csr @ h`` would
    re-sort the indices for :math:`A^\top g` at every backward step (BPTT
    steps, the adjoint's vector-Jacobian products)."""

    def __init__(self, adj: Tensor, groups: int = 1) -> None:
        self.adj = adj
        self.groups = groups
        self._adj_t: Optional[Tensor] = None

    def transposed(self) -> Tensor:
        if self._adj_t is None:
            self._adj_t = self.adj.t().to_sparse_csr()
        return self._adj_t

    def transposed_apply(self, g: Tensor) -> Tensor:
        """:math:`A^\top g` for ``g`` of shape ``[N, C]``, as ``[N, g C]``."""
        with full_precision(g.device.type):
            out = (self.transposed() @ g.to(self.adj.dtype)).to(g.dtype)
        return out.reshape(g.size(0), self.groups * g.size(1)) \
            if self.groups > 1 else out

    def add_transposed_(self, out: Tensor, g: Tensor) -> Tensor:
        """``out += A^T g`` in place, for an ordinary (``groups == 1``)
        matrix: no ``[N, C]`` result is allocated."""
        with full_precision(g.device.type):
            if out.dtype == self.adj.dtype:
                return out.addmm_(self.transposed(), g.to(out.dtype))
            return out.add_((self.transposed() @ g.to(self.adj.dtype))
                            .to(out.dtype))

    def __call__(self, h: Tensor) -> Tensor:
        """``A h``, computed in the matrix's dtype (float32 or float64):
        sparse kernels lack low-precision versions on the CPU, so a float16
        or bfloat16 input is cast up for the product (with autocast off) and
        the result cast back to the input's dtype."""
        if self.groups > 1:
            h = h.reshape(h.size(0) * self.groups, h.size(1) // self.groups)
        dtype = h.dtype
        if dtype != self.adj.dtype:
            h = h.to(self.adj.dtype)
        with full_precision(h.device.type):
            out = self.adj @ h if not h.requires_grad else \
                _SparseMatMul.apply(h, self)
        return out if out.dtype == dtype else out.to(dtype)


class _SparseMatMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Tensor, matrix: SparseMatrix) -> Tensor:
        ctx.matrix = matrix
        return matrix.adj @ h

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None]:
        # Written with differentiable ops, so double backward works (the
        # Jacobian penalty differentiates through a vector-Jacobian product).
        with full_precision(grad.device.type):
            return ctx.matrix.transposed() @ grad.to(ctx.matrix.adj.dtype), \
                None
