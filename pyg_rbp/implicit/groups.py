"""Per-graph reductions: the sums over each graph's rows that per-graph
stopping (the forward's residuals) and per-graph mixing (Anderson's and
Broyden's inner products) are built from.

A state's first dimension indexes nodes; ``groups`` is PyG's node-to-graph
vector (``None``: the whole state is one group).
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

#: Guards the divisions by a norm (a zero state, a zero residual).
EPS = 1e-12


def group_sum(node: Tensor, groups: Optional[Tensor],
              num_groups: int) -> Tensor:
    """``node`` (``[..., rows]``, one value per row) summed over each
    group's rows: ``[..., num_groups]`` (``[..., 1]`` without ``groups``)."""
    if groups is None:
        return node.sum(-1, keepdim=True)
    out = node.new_zeros(node.shape[:-1] + (num_groups, ))
    return out.index_add_(node.dim() - 1, groups, node)


def group_dot(a: Tensor, b: Tensor, groups: Optional[Tensor],
              num_groups: int) -> Tensor:
    """The inner product of ``a`` and ``b`` over each group's rows:
    ``[..., num_groups]`` (``[..., 1]``, over everything, without
    ``groups``). ``a`` is ``b``'s shape with optional leading dimensions
    (a stack of history rows, each multiplied with ``b``)."""
    lead = a.shape[:a.dim() - b.dim()]
    if groups is None:
        return (a.reshape(lead + (-1, )) @ b.reshape(-1)).unsqueeze(-1)
    rows = b.size(0)
    node = (a.reshape(lead + (rows, -1)) * b.reshape(rows, -1)).sum(-1)
    return group_sum(node, groups, num_groups)


def per_row(coef: Tensor, groups: Optional[Tensor], like: Tensor) -> Tensor:
    """``coef`` (``[num_groups]``) broadcast against ``like``'s rows."""
    if groups is None:
        return coef.reshape((1, ) * like.dim()) if like.dim() else \
            coef.reshape(())
    return coef[groups].reshape((-1, ) + (1, ) * (like.dim() - 1))
