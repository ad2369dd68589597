"""What every model holding an RBP layer shares."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..implicit import RBPStats

#: ``(hidden_channels, num_edge_types) -> layer``: what a model's ``conv=``
#: and a run's ``conv_factory=`` take in place of our layer (PyG's
#: GatedGraphConv: :func:`pyg_rbp.models.pyg_gated_factory`).
ConvFactory = Callable[[int, int], torch.nn.Module]


class RBPModel(torch.nn.Module):
    """A model whose recurrent layer is ``self.conv``.

    :attr:`stats` is the one way to read the solver statistics of a model's
    last call, whatever the model (the Lightning modules and callbacks read
    ``module.model.stats``).
    """

    conv: torch.nn.Module

    @property
    def stats(self) -> Optional[RBPStats]:
        """The layer's :class:`pyg_rbp.RBPStats` of the last call (``None``
        for a layer without them, such as PyG's ``GatedGraphConv``)."""
        return getattr(self.conv, "stats", None)


def tagged_factory(make: Callable[[int], torch.nn.Module],
                   layer: type) -> ConvFactory:
    """A :data:`ConvFactory` that builds ``make(hidden_channels)`` (the
    edge types are the layer's own, not the data's) and carries the layer
    class's ``name`` (what a run's report calls the layer) and
    ``num_edge_types`` (how the graphs are fed to it)."""
    def build(hidden_channels: int, num_edge_types: int) -> torch.nn.Module:
        return make(hidden_channels)
    build.name = layer.name  # type: ignore[attr-defined]
    build.num_edge_types = layer.num_edge_types  # type: ignore[attr-defined]
    return build
