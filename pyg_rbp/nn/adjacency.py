"""The aggregation operator built from a checked graph
(:mod:`pyg_rbp.nn.graph_input` checks it).

Everything in here runs once per layer call, never once per propagation
step: the iterated map only applies the operator this module returns.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from ..implicit.precision import full_precision

Aggregate = Callable[[Tensor], Tensor]

# torch's notice that CSR support is "beta" says nothing to our users: the CSR
# product we use is tested here. Filtered by its exact text, once.
warnings.filterwarnings("ignore", category=UserWarning,
                        message="Sparse CSR tensor support is in beta state")

#: Aggregations served by one sparse-matrix product per step.
MATRIX_AGGRS = ("add", "sum", "mean")


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


def normalized_adjacency(edge_index: Tensor, num_nodes: int,
                         dtype: torch.dtype,
                         edge_weight: Optional[Tensor] = None) -> Tensor:
    r""":math:`D^{-1/2}(A + I)D^{-1/2}` as a CSR matrix ``[N, N]`` (rows are
    targets), from a checked ``[2, E]`` graph: GCN's propagation matrix."""
    index, weight = gcn_norm(edge_index, edge_weight, num_nodes,
                             add_self_loops=True, dtype=dtype)
    return torch.sparse_coo_tensor(index.flip(0), weight,
                                   (num_nodes, num_nodes),
                                   check_invariants=False).coalesce() \
        .to_sparse_csr()


def build_aggregate(edge_index: Tensor, edge_weight: Optional[Tensor],
                    num_nodes: int, aggr: Any, normalize: bool,
                    dtype: torch.dtype, propagate: Callable[..., Tensor],
                    edge_type: Optional[Tensor] = None,
                    num_types: int = 1, scatter: bool = False) -> Aggregate:
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
    Other aggregations, edge weights that require grad, and ``scatter``
    (the layer is being explained: PyG's explain hook, which applies the
    explainer's edge mask to the messages, runs inside ``propagate``) go
    through ``propagate(edge_index, h, edge_weight, edge_type)`` (the
    layer's gather/scatter message passing) each step.
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
            needs_edge_grad or scatter:
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


#: Aggregations the contractive step can bound (see nonexpansive_weights).
NONEXPANSIVE_AGGRS = ("add", "sum", "mean", "max", "min")


def nonexpansive_weights(edge_index: Tensor, edge_weight: Optional[Tensor],
                         num_nodes: int, aggr: str, normalize: bool,
                         dtype: torch.dtype,
                         edge_type: Optional[Tensor] = None,
                         loop_type: int = 0
                         ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    r"""Edge weights under which the aggregation is non-expansive.

    The contractive step (:mod:`pyg_rbp.nn.contractive_step`) needs the
    aggregation :math:`\mathbf{P}` (all edge types together) to satisfy
    :math:`|\mathbf{P}|\mathbf{w} \le \mathbf{w}` for some positive
    :math:`\mathbf{w}`. No bound on the weights can give that for a sum
    over an unbounded in-degree, so:

    * ``normalize`` (``aggr='add'``): :math:`\mathbf{D}^{-1/2}(\mathbf{A}
      + \mathbf{I})\mathbf{D}^{-1/2}` (typed: the self-loops get type
      ``loop_type``), which meets it with :math:`\mathbf{w} =
      \mathbf{D}^{1/2}\mathbf{1}` for non-negative weights; with a negative
      weight its rows are capped as below;
    * ``'add'`` / ``'sum'``: a node whose incoming weights have absolute sum
      :math:`s_i > 1` gets them divided by :math:`s_i` (it averages its
      messages); a node with :math:`s_i \le 1` (in-degree one on an
      unweighted graph: chains, trees) keeps plain summation;
    * ``'mean'``: the same, for :math:`s_i` = the mean absolute weight;
    * ``'max'`` / ``'min'``: each weight capped at absolute value 1.

    Differentiable in ``edge_weight``. Returns ``(edge_index, edge_weight,
    edge_type)`` (``normalize`` adds the self-loops).
    """
    device = edge_index.device
    if normalize:
        if edge_type is not None:
            edge_index, edge_weight, edge_type = _typed_self_loops(
                edge_index, edge_weight, edge_type, num_nodes, loop_type,
                dtype)
        else:
            edge_index, edge_weight = gcn_norm(
                edge_index, edge_weight, num_nodes, add_self_loops=True,
                dtype=dtype)
        if not bool((edge_weight < 0).any()):
            return edge_index, edge_weight, edge_type
        aggr = "add"
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype,
                                 device=device)
    if aggr in ("max", "min"):
        return edge_index, edge_weight / edge_weight.abs().clamp_min(1), \
            edge_type
    dst = edge_index[1]
    total = edge_weight.new_zeros(num_nodes).index_add(
        0, dst, edge_weight.abs())
    if aggr == "mean":
        count = edge_weight.new_zeros(num_nodes).index_add_(
            0, dst, torch.ones_like(edge_weight))
        total = total / count.clamp_min(1)
    return edge_index, edge_weight / total.clamp_min(1)[dst], edge_type


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

    def restrict(self, nodes: Tensor) -> "SparseMatrix":
        """The matrix between ``nodes`` only (rows and, per group, columns),
        renumbered ``0..len(nodes)-1`` in the order given. Exact for
        ``nodes`` that are whole connected components (whole graphs of a
        batch): no entry links them to the rest."""
        n, g = self.adj.size(0), self.groups
        adj = self.adj
        crow, col, val = (adj.crow_indices(), adj.col_indices(),
                          adj.values())
        new_of = torch.full((n, ), -1, dtype=torch.long, device=col.device)
        new_of[nodes] = torch.arange(nodes.numel(), device=col.device)
        row = torch.repeat_interleave(
            torch.arange(n, device=col.device), crow[1:] - crow[:-1])
        src, kind = col // g, col % g
        keep = (new_of[row] >= 0) & (new_of[src] >= 0)
        m = nodes.numel()
        sub = torch.sparse_coo_tensor(
            torch.stack([new_of[row[keep]], new_of[src[keep]] * g +
                         kind[keep]]), val[keep], (m, m * g),
            check_invariants=False).coalesce().to_sparse_csr()
        return SparseMatrix(sub, groups=g)

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
