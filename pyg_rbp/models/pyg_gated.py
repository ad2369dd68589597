"""PyG's own ``GatedGraphConv`` behind the call of our layer: the reference a
model is compared with.

A PyG user's alternative to :class:`pyg_rbp.RBPGatedGraphConv` is
``torch_geometric.nn.GatedGraphConv(hidden, num_layers)``: ``num_layers``
untied propagation steps, back-propagation through them, no edge types.
:class:`PygGatedGraphConv` gives it the call of our layer
(``conv(x, edge_index, batch=..., edge_type=...)``), so that the models and
Lightning runs take it as their propagation layer (``conv=`` /
``conv_factory=``) with the same encoder, readout and head:

.. code-block:: python

    from pyg_rbp.models import RBPGraphClassifier, pyg_gated_factory

    ours = RBPGraphClassifier(7, 64, 2)
    pygs = RBPGraphClassifier(7, 64, 2, conv=pyg_gated_factory(5))
"""
from __future__ import annotations

from typing import Optional

import torch
from torch_geometric.nn import GatedGraphConv

from .._checks import check_int
from .base import ConvFactory, tagged_factory


class PygGatedGraphConv(torch.nn.Module):
    """PyG's ``GatedGraphConv(hidden, num_layers, aggr)`` with the call of
    :class:`pyg_rbp.RBPGatedGraphConv`: ``batch`` and ``edge_type`` are
    accepted and ignored (it has neither per-graph stopping nor edge types).

    Args:
        hidden (int): Node state size (inputs narrower are zero-padded by
            PyG's layer).
        num_layers (int): Propagation steps :math:`T`, each with its own
            weight :math:`W_t`: :math:`m = A (h W_t)`,
            :math:`h \\leftarrow \\mathrm{GRU}(m, h)`.
        aggr (str, optional): Message aggregation. (default: ``"add"``)
    """

    #: What the runs record as the layer's name.
    name = "pyg"
    #: It sees every graph untyped, as its users have it.
    num_edge_types = 1

    def __init__(self, hidden: int, num_layers: int,
                 aggr: str = "add") -> None:
        super().__init__()
        check_int("hidden", hidden, 1)
        check_int("num_layers", num_layers, 1)
        self.conv = GatedGraphConv(hidden, num_layers, aggr=aggr)

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                batch: Optional[torch.Tensor] = None,
                edge_type: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.conv(x, edge_index)


def pyg_gated_factory(num_layers: int) -> ConvFactory:
    """``(hidden, num_edge_types) -> PygGatedGraphConv(hidden, num_layers)``
    for a model's ``conv=`` or a run's ``conv_factory=``; its ``name``
    (``"pyg"``) goes into the run's report and its ``num_edge_types`` (1)
    has the graphs fed untyped."""
    check_int("num_layers", num_layers, 1)
    return tagged_factory(
        lambda hidden: PygGatedGraphConv(hidden, num_layers),
        PygGatedGraphConv)
