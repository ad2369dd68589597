"""The contenders that are not ours, built here and not in the library.

``PygGatedGraphConv`` puts PyG's ``GatedGraphConv`` (untied steps,
back-propagation through time, no edge types) behind the call of
``pyg_rbp.RBPGatedGraphConv``, so that the library's models and runs take it
as their propagation layer (``conv=`` / ``conv_factory=``). The graph
classification and bAbI benchmarks, and ``examples/graph_classification.py
--conv pyg``, use it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch_geometric.nn import GatedGraphConv


class PygGatedGraphConv(torch.nn.Module):
    """PyG's ``GatedGraphConv(hidden, num_layers, aggr)`` with the call of
    ``RBPGatedGraphConv``: ``batch`` and ``edge_type`` are accepted and
    ignored (it has neither per-graph stopping nor edge types)."""

    #: What the runs record as the layer's name.
    name = "pyg"
    #: It sees every graph untyped, as its users have it.
    num_edge_types = 1

    def __init__(self, hidden: int, num_layers: int,
                 aggr: str = "add") -> None:
        super().__init__()
        self.conv = GatedGraphConv(hidden, num_layers, aggr=aggr)

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                batch: Optional[torch.Tensor] = None,
                edge_type: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.conv(x, edge_index)


def pyg_factory(num_layers: int) -> Callable[[int, int], torch.nn.Module]:
    """``(hidden, num_edge_types) -> PygGatedGraphConv`` for the runs'
    ``conv_factory``."""
    def build(hidden: int, num_edge_types: int) -> torch.nn.Module:
        return PygGatedGraphConv(hidden, num_layers)
    # read by train_graph_classifier: the report's name, and no edge types
    build.name = PygGatedGraphConv.name  # type: ignore[attr-defined]
    build.num_edge_types = 1  # type: ignore[attr-defined]
    return build
