"""A GGNN graph classifier: encoder, RBPGatedGraphConv, readout, MLP."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch_geometric.nn import GatedGraphConv, global_add_pool, \
    global_mean_pool
from torch_geometric.typing import Adj, OptTensor

from .._checks import check_choice, check_int
from ..nn import RBPGatedGraphConv
from .base import RBPModel

READOUTS = ("gated", "sum", "mean")
CONVS = ("rbp", "pyg")


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
        conv (str, optional): :obj:`"rbp"` (our layer) or :obj:`"pyg"`
            (PyG's :class:`~torch_geometric.nn.conv.GatedGraphConv`: untied
            weights, back-propagation through its ``num_layers`` steps, no
            edge types; the baseline). (default: :obj:`"rbp"`)
        **conv_kwargs (optional): Options of
            :class:`pyg_rbp.RBPGatedGraphConv` (``num_layers``, ``method``,
            ``backward_steps``, ``normalize``, ``jacobian_penalty``, ...);
            with ``conv="pyg"`` only ``num_layers`` and ``aggr``.
    """

    def __init__(self, in_channels: int, hidden_channels: int,
                 out_channels: int, *, num_edge_types: int = 1,
                 readout: str = "gated", dropout: float = 0.0,
                 per_graph_stopping: bool = True, conv: str = "rbp",
                 **conv_kwargs: Any) -> None:
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("hidden_channels", hidden_channels, 1)
        check_int("out_channels", out_channels, 1)
        self.num_edge_types = check_int("num_edge_types", num_edge_types, 1)
        self.readout_kind = check_choice("readout", readout, READOUTS)
        self.conv_kind = check_choice("conv", conv, CONVS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        self.dropout = dropout
        self.per_graph_stopping = bool(per_graph_stopping)
        self.encoder = torch.nn.Linear(in_channels, hidden_channels)
        if conv == "pyg":
            unknown = set(conv_kwargs) - {"num_layers", "aggr"}
            if unknown:
                raise ValueError(f"conv='pyg' (PyG's GatedGraphConv) takes "
                                 f"only num_layers and aggr (got "
                                 f"{sorted(unknown)})")
            if num_edge_types > 1:
                raise ValueError(f"conv='pyg': PyG's GatedGraphConv has no "
                                 f"edge types (got num_edge_types="
                                 f"{num_edge_types}); use conv='rbp'")
            self.conv: torch.nn.Module = GatedGraphConv(
                hidden_channels, conv_kwargs.get("num_layers", 5),
                aggr=conv_kwargs.get("aggr", "add"))
        else:
            self.conv = RBPGatedGraphConv(hidden_channels,
                                          num_edge_types=num_edge_types,
                                          **conv_kwargs)
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
        if self.conv_kind == "pyg":
            h = self.conv(x, edge_index)
        else:
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
