"""A GGNN graph classifier: encoder, RBPGatedGraphConv, readout, MLP."""
from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn import global_add_pool, \
    global_mean_pool
from torch_geometric.typing import Adj, OptTensor

from .._checks import check_choice, check_int
from ..nn import RBPGatedGraphConv
from .base import ConvFactory, RBPModel

READOUTS = ("gated", "sum", "mean")


class GatedReadout(torch.nn.Module):
    r"""The graph-level output of Li et al. (2016), eq. 7, without its final
    non-linearity (the MLP head follows):

    .. math::
        \mathbf{h}_G = \sum_{i \in G} \sigma\big(i([\mathbf{h}_i^*,
        \mathbf{x}_i])\big) \odot j([\mathbf{h}_i^*, \mathbf{x}_i])

    with :math:`i`, :math:`j` linear maps: a soft, per-channel attention on
    which nodes matter, summed per graph (unlike PyG's
    ``AttentionalAggregation``, the gates are not normalised over the graph,
    so the readout can count).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.gate = torch.nn.Linear(in_channels, out_channels)
        self.value = torch.nn.Linear(in_channels, out_channels)

    def reset_parameters(self) -> None:
        self.gate.reset_parameters()
        self.value.reset_parameters()

    def forward(self, hx: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        return global_add_pool(torch.sigmoid(self.gate(hx)) * self.value(hx),
                               batch, num_graphs)


class RBPGraphClassifier(RBPModel):
    r"""Graph classification with a recurrent GGNN run to its fixed point.

    .. math::
        \mathbf{x}' = \mathrm{ReLU}(\mathbf{W}_e \mathbf{x}), \qquad
        \mathbf{h}^* = \mathrm{RBPGatedGraphConv}(\mathbf{x}', \mathcal{E},
        \text{types}, \text{batch}), \qquad
        \hat{\mathbf{y}}_G = \mathrm{MLP}(\mathrm{readout}_G(\mathbf{h}^*,
        \mathbf{x}'))

    Readouts: ``'gated'`` (:class:`GatedReadout`, the GGNN paper's), or
    ``'sum'`` / ``'mean'`` pooling of :math:`[\mathbf{h}^*, \mathbf{x}']`.
    The MLP is Linear-ReLU-dropout-Linear.

    Args:
        in_channels (int): Node feature size.
        hidden_channels (int): State size of the recurrent layer.
        out_channels (int): Number of classes.
        num_edge_types (int, optional): Edge types of the graphs (e.g. 4
            bond types for MUTAG); the forward then needs ``edge_type``.
            (default: :obj:`1`)
        readout (str, optional): :obj:`"gated"`, :obj:`"sum"` or
            :obj:`"mean"`. (default: :obj:`"gated"`)
        dropout (float, optional): Dropout in the MLP head.
            (default: :obj:`0.0`)
        per_graph_stopping (bool, optional): Judge convergence per graph of
            a mini-batch (converged graphs stop changing) instead of once for
            the whole batch. (default: :obj:`True`)
        conv (torch.nn.Module or callable, optional): A propagation layer to
            use instead of :class:`pyg_rbp.RBPGatedGraphConv`, called as
            ``conv(x, edge_index, batch=..., edge_type=...)``, or a factory
            ``conv(hidden_channels, num_edge_types) -> Module`` called where
            the layer would be built (PyG's ``GatedGraphConv``:
            :func:`pyg_rbp.models.pyg_gated_factory`).
            (default: :obj:`None`)
        **conv_kwargs (optional): Options of
            :class:`pyg_rbp.RBPGatedGraphConv` (``num_layers``, ``method``,
            ``backward_steps``, ``normalize``, ``jacobian_penalty``, ...);
            not with ``conv``.
    """

    def __init__(self, in_channels: int, hidden_channels: int,
                 out_channels: int, *, num_edge_types: int = 1,
                 readout: str = "gated", dropout: float = 0.0,
                 per_graph_stopping: bool = True,
                 conv: Optional[Union[torch.nn.Module, ConvFactory]] = None,
                 **conv_kwargs: Any) -> None:
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("hidden_channels", hidden_channels, 1)
        check_int("out_channels", out_channels, 1)
        self.num_edge_types = check_int("num_edge_types", num_edge_types, 1)
        self.readout_kind = check_choice("readout", readout, READOUTS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        if conv is not None and conv_kwargs:
            raise ValueError(f"pass layer options either in 'conv' or as "
                             f"keywords, not both (got conv and "
                             f"{sorted(conv_kwargs)})")
        self.dropout = dropout
        self.per_graph_stopping = bool(per_graph_stopping)
        self.encoder = torch.nn.Linear(in_channels, hidden_channels)
        if conv is None:
            conv = RBPGatedGraphConv(hidden_channels,
                                     num_edge_types=num_edge_types,
                                     **conv_kwargs)
        elif not isinstance(conv, torch.nn.Module) and callable(conv):
            conv = conv(hidden_channels, num_edge_types)
        if not isinstance(conv, torch.nn.Module):
            raise TypeError(f"'conv' must be a torch.nn.Module called like "
                            f"RBPGatedGraphConv, or a factory of one (got "
                            f"{type(conv).__name__}); PyG's GatedGraphConv "
                            f"is pyg_rbp.models.pyg_gated_factory(steps)")
        self.conv: torch.nn.Module = conv
        width = 2 * hidden_channels
        self.gated = GatedReadout(width, hidden_channels) \
            if readout == "gated" else None
        head_in = hidden_channels if readout == "gated" else width
        self.head = torch.nn.Sequential(
            torch.nn.Linear(head_in, hidden_channels), torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden_channels, out_channels))

    def reset_parameters(self) -> None:
        """Re-draw every weight."""
        self.encoder.reset_parameters()
        self.conv.reset_parameters()
        if self.gated is not None:
            self.gated.reset_parameters()
        for layer in self.head:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def forward(self, x: Tensor, edge_index: Adj, batch: OptTensor = None,
                edge_type: OptTensor = None,
                num_graphs: Optional[int] = None) -> Tensor:
        """Class logits ``[num_graphs, out_channels]``."""
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 1
        x = self.encoder(x).relu()
        h = self.conv(x, edge_index,
                      batch=batch if self.per_graph_stopping else None,
                      edge_type=edge_type if self.num_edge_types > 1
                      else None)
        hx = torch.cat([h, x], dim=-1)
        if self.gated is not None:
            g = self.gated(hx, batch, num_graphs)
        elif self.readout_kind == "sum":
            g = global_add_pool(hx, batch, num_graphs)
        else:
            g = global_mean_pool(hx, batch, num_graphs)
        return self.head(g)
