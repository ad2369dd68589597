r"""No propagation at all: the structure-agnostic reference of a graph
classifier.

Errica et al. (ICLR 2020) measure every graph network against a baseline
that ignores the edges: node features summed per graph, then an MLP. On
NCI1 and PROTEINS it is hard to beat (69.8 and 75.8 %). :class:`NoGraphConv`
puts that baseline inside our own model, so that it shares the encoder,
readout, head, optimiser, folds and epoch selection: in place of the
propagation layer it returns :math:`\mathbf{h} = \mathbf{0}`, so the
gated-sum readout sees :math:`[\mathbf{0}, \mathbf{x}_i]` and the model is

.. math::
    \hat{y}_G = \mathrm{MLP}\Big(\textstyle\sum_{i \in G}
    \sigma(\mathbf{W}_g [\mathbf{0}, \mathbf{x}_i]) \odot
    \mathbf{W}_v [\mathbf{0}, \mathbf{x}_i]\Big),
    \qquad \mathbf{x}_i = \mathrm{ReLU}(\mathrm{encoder}(\text{features}_i)),

a function of the multiset of node features only. What a propagation layer
adds over it is what the graph adds.

.. code-block:: python

    from pyg_rbp.models import RBPGraphClassifier, no_graph_factory

    blind = RBPGraphClassifier(37, 64, 2, conv=no_graph_factory())
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import ConvFactory, tagged_factory


class NoGraphConv(torch.nn.Module):
    """A propagation layer that ignores the graph: ``h = 0`` of the input's
    shape, no parameters. Called like :class:`pyg_rbp.RBPGatedGraphConv`
    (``batch`` and ``edge_type`` accepted and ignored)."""

    #: What the runs record as the layer's name.
    name = "none"
    #: It sees no edges, typed or not.
    num_edge_types = 1

    def reset_parameters(self) -> None:
        """Nothing to draw."""

    def forward(self, x: Tensor, edge_index: Optional[object] = None,
                batch: Optional[Tensor] = None,
                edge_type: Optional[Tensor] = None) -> Tensor:
        return torch.zeros_like(x)


def no_graph_factory() -> ConvFactory:
    """``(hidden, num_edge_types) -> NoGraphConv()`` for a model's ``conv=``
    or a run's ``conv_factory=``; its ``name`` (``"none"``) goes into the
    run's report."""
    return tagged_factory(lambda hidden: NoGraphConv(), NoGraphConv)
