"""A GGNN node classifier: encoder, RBPGatedGraphConv, classifier."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.typing import Adj

from .._checks import check_int
from ..nn import RBPGatedGraphConv
from ..nn.adjacency import SparseMatrix, normalized_adjacency
from ..nn.graph_input import standardise_graph
from .base import RBPModel


class RBPNodeClassifier(RBPModel):
    r"""Node classification with a recurrent GGNN run to its fixed point.

    .. math::
        \mathbf{x}' = \mathrm{ReLU}(\mathbf{W}_e\, \mathrm{drop}_{p_{in}}
        (\mathbf{x})), \qquad
        \mathbf{h}^* = \mathrm{RBPGatedGraphConv}(\mathrm{drop}_p
        (\mathbf{x}'), \mathcal{E}), \qquad
        \hat{\mathbf{y}} = \hat{\mathbf{A}}^{k}\, \mathbf{W}_c\,
        \mathrm{drop}_{p_{out}}(\mathbf{h}^*)

    with :math:`\hat{\mathbf{A}} = \mathbf{D}^{-1/2}(\mathbf{A} + \mathbf{I})
    \mathbf{D}^{-1/2}`. The optional output smoothing (:math:`k` =
    ``out_propagation``, as in GCN's last layer) averages each node's logits
    with its neighbours': with the GRU step (``cell='gru'``) it was worth
    about 3 points on Cora; the contractive step's carry propagates far
    enough itself, and 2 smoothing steps cost it about 1.5 points (see
    docs/results.md). :math:`k = 0` is the plain per-node classifier.

    Args:
        in_channels (int): Input feature size.
        hidden_channels (int): State size of the recurrent layer.
        out_channels (int): Number of classes.
        input_dropout (float, optional): Dropout on the raw features.
            (default: :obj:`0.5`)
        dropout (float, optional): Dropout before the recurrent layer.
            (default: :obj:`0.5`)
        output_dropout (float, optional): Dropout on the layer's output,
            before the classifier; ``None`` uses ``dropout``. Like APPNP,
            which does not drop its propagated output, the contractive
            step trains better without (Cora 82.6 against 81.1 %, CiteSeer
            70.6 against 70.3 %, first seeds; docs/results.md).
            (default: :obj:`0.0`)
        out_propagation (int, optional): Smoothing steps :math:`k` on the
            logits. (default: :obj:`0`)
        **conv_kwargs (optional): Options of
            :class:`pyg_rbp.RBPGatedGraphConv` (``num_layers``, ``method``,
            ``backward_steps``, ``normalize``, ...).
    """

    def __init__(self, in_channels: int, hidden_channels: int,
                 out_channels: int, *, input_dropout: float = 0.5,
                 dropout: float = 0.5, out_propagation: int = 0,
                 output_dropout: Optional[float] = 0.0,
                 **conv_kwargs: Any) -> None:
        super().__init__()
        if output_dropout is None:
            output_dropout = dropout
        for name, p in (("input_dropout", input_dropout),
                        ("dropout", dropout),
                        ("output_dropout", output_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"'{name}' must be in [0, 1) (got {p})")
        self.out_propagation = check_int("out_propagation", out_propagation,
                                         0)
        self.input_dropout = input_dropout
        self.dropout = dropout
        self.output_dropout = output_dropout
        self.encoder = torch.nn.Linear(in_channels, hidden_channels)
        self.conv = RBPGatedGraphConv(hidden_channels, **conv_kwargs)
        self.classifier = torch.nn.Linear(hidden_channels, out_channels)

    def reset_parameters(self) -> None:
        """Re-draw every weight."""
        self.encoder.reset_parameters()
        self.conv.reset_parameters()
        self.classifier.reset_parameters()

    def _smoothing_matrix(self, edge_index: Adj, num_nodes: int,
                          dtype: torch.dtype) -> SparseMatrix:
        r""":math:`D^{-1/2}(A + I)D^{-1/2}`: the layer's own matrix of this
        call where it aggregated with exactly that (``normalize=True``, one
        edge type), else built here, once per call."""
        if dtype not in (torch.float32, torch.float64):
            dtype = torch.float32
        conv = self.conv
        if conv.normalize and conv.num_edge_types == 1 and \
                conv.aggr in ("add", "sum") and conv.adjacency is not None \
                and conv.adjacency.adj.dtype == dtype:
            return conv.adjacency
        index, weight = standardise_graph(edge_index, None, num_nodes,
                                          _device(edge_index),
                                          type(self).__name__)
        return SparseMatrix(normalized_adjacency(index, num_nodes, dtype,
                                                 weight))

    def forward(self, x: Tensor, edge_index: Adj) -> Tensor:
        """Class logits ``[N, out_channels]``."""
        x = F.dropout(x, self.input_dropout, self.training)
        x = self.encoder(x).relu()
        x = F.dropout(x, self.dropout, self.training)
        h = self.conv(x, edge_index)
        h = F.dropout(h, self.output_dropout, self.training)
        out = self.classifier(h)
        if self.out_propagation > 0:
            # SparseMatrix: float32 products under autocast (no low-precision
            # sparse kernels) and a transpose built once for backward.
            smooth = self._smoothing_matrix(edge_index, x.size(0), out.dtype)
            for _ in range(self.out_propagation):
                out = smooth(out)
        return out


def _device(edge_index: Adj) -> torch.device:
    return edge_index.device() if callable(getattr(edge_index, "device",
                                                   None)) \
        else edge_index.device
