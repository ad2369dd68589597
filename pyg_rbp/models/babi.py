"""The output models of Gated Graph Neural Networks on bAbI (Li et al., 2016,
section 3.3 and 5.1): node selection, graph-level classification and a
two-step path, over a recurrent GGNN run to its fixed point."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import scatter, softmax

from .._checks import check_choice, check_int
from ..nn import RBPGatedGraphConv
from .base import RBPModel
from .graph_classifier import GatedReadout

#: The output models: a node of the graph, a graph label, a two-step path.
OUTPUTS = ("node", "graph", "path")
#: Steps of the ``'path'`` output (task 19's paths have two directions).
PATH_STEPS = 2


class RBPGGNN(RBPModel):
    r"""GGNN with the output models of the bAbI experiments.

    The annotation :math:`\mathbf{x}_v` (one column per question slot) is
    the first part of the initial state, the rest is zero (the paper's
    :math:`\mathbf{h}_v^{(1)} = [\mathbf{x}_v^\top, \mathbf{0}]^\top`), and
    :math:`\mathbf{h}^*` is the fixed point of ``conv``
    (:class:`pyg_rbp.RBPGatedGraphConv` with typed edges by default). Then,
    with :math:`\mathbf{u}_v = [\mathbf{h}^*_v, \mathbf{x}_v]`:

    * ``'node'`` (node selection, eq. 6 of the paper): a score
      :math:`s_v = \mathbf{w}^\top \tanh(\mathbf{W}\mathbf{u}_v)` per node
      and a softmax over the nodes of each graph; the output is the
      per-node log-probability, ``[N]``.
    * ``'graph'`` (eq. 7): :math:`\mathbf{h}_G = \tanh\big(\sum_v
      \sigma(i(\mathbf{u}_v)) \odot j(\mathbf{u}_v)\big)`, then a linear map
      to class logits, ``[B, C]``.
    * ``'path'``: two such gated readouts and linear heads, one per step of
      the path, ``[B, 2, C]``. GGS-NN (section 4) instead propagates again
      for each output step, with the next step's annotation predicted from
      the last; for task 19's fixed length of two steps, two heads on one
      fixed point see the same information at half the cost (one fixed-point
      solve, one adjoint solve per training step), so we use them.

    Args:
        annotation_size (int): Width of ``x`` (question slots).
        hidden_channels (int): State size of the recurrent layer
            (``>= annotation_size``).
        output (str): :obj:`"node"`, :obj:`"graph"` or :obj:`"path"`.
        num_classes (int, optional): Classes of the ``'graph'`` and
            ``'path'`` outputs. (default: :obj:`2`)
        num_edge_types (int, optional): Edge types of the graphs (the
            reverse directions counted). (default: :obj:`1`)
        conv (torch.nn.Module, optional): The propagation layer, called as
            ``conv(x, edge_index, batch=..., edge_type=...)``; built as
            ``RBPGatedGraphConv(hidden_channels, num_edge_types=...,
            **conv_kwargs)`` when not given. Pass any module with that
            call to compare layers on the same output model.
            (default: :obj:`None`)
        **conv_kwargs (optional): Options of
            :class:`pyg_rbp.RBPGatedGraphConv` (``num_layers``, ``method``,
            ``backward_steps``, ...), when ``conv`` is not given.
    """

    def __init__(self, annotation_size: int, hidden_channels: int,
                 output: str, num_classes: int = 2, num_edge_types: int = 1,
                 conv: Optional[torch.nn.Module] = None,
                 **conv_kwargs: Any) -> None:
        super().__init__()
        check_int("annotation_size", annotation_size, 1)
        check_int("hidden_channels", hidden_channels, 1)
        if hidden_channels < annotation_size:
            raise ValueError(f"'hidden_channels' must be at least "
                             f"annotation_size={annotation_size} (got "
                             f"{hidden_channels})")
        self.output = check_choice("output", output, OUTPUTS)
        check_int("num_classes", num_classes, 2)
        self.num_edge_types = check_int("num_edge_types", num_edge_types, 1)
        self.annotation_size = annotation_size
        self.num_classes = num_classes
        if conv is None:
            conv = RBPGatedGraphConv(hidden_channels,
                                     num_edge_types=num_edge_types,
                                     **conv_kwargs)
        elif conv_kwargs:
            raise ValueError(f"pass layer options either in 'conv' or as "
                             f"keywords, not both (got conv and "
                             f"{sorted(conv_kwargs)})")
        self.conv = conv
        width = hidden_channels + annotation_size
        if output == "node":
            self.score = torch.nn.Sequential(
                torch.nn.Linear(width, hidden_channels), torch.nn.Tanh(),
                torch.nn.Linear(hidden_channels, 1))
            self.readouts = torch.nn.ModuleList()
            self.heads = torch.nn.ModuleList()
        else:
            steps = PATH_STEPS if output == "path" else 1
            self.readouts = torch.nn.ModuleList(
                GatedReadout(width, hidden_channels) for _ in range(steps))
            self.heads = torch.nn.ModuleList(
                torch.nn.Linear(hidden_channels, num_classes)
                for _ in range(steps))

    def reset_parameters(self) -> None:
        """Re-draw every weight."""
        self.conv.reset_parameters()
        for module in self.modules():
            if module is not self and module is not self.conv and \
                    isinstance(module, torch.nn.Linear):
                module.reset_parameters()


    def forward(self, x: Tensor, edge_index: Adj, edge_type: OptTensor = None,
                batch: OptTensor = None,
                num_graphs: Optional[int] = None) -> Tensor:
        """Per-node log-probabilities ``[N]`` (``'node'``), class logits
        ``[B, C]`` (``'graph'``) or ``[B, 2, C]`` (``'path'``)."""
        if x.dim() != 2 or x.size(-1) != self.annotation_size:
            raise ValueError(f"'x' must have shape [num_nodes, "
                             f"{self.annotation_size}] (got "
                             f"{list(x.shape)})")
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 1
        h = self.conv(x, edge_index, batch=batch,
                      edge_type=edge_type if self.num_edge_types > 1
                      else None)
        u = torch.cat([h, x], dim=-1)
        if self.output == "node":
            return softmax(self.score(u).view(-1), batch, num_nodes=x.size(0)
                           ).clamp_min(1e-30).log()
        outs = [head(torch.tanh(readout(u, batch, num_graphs)))
                for readout, head in zip(self.readouts, self.heads)]
        return outs[0] if self.output == "graph" else torch.stack(outs, 1)


def babi_loss(out: Tensor, y: Tensor, output: str,
              ptr: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Mean negative log-likelihood and the number of correct answers.

    Args:
        out: What :class:`RBPGGNN` returned.
        y: The batch's targets: per graph, the answer's index within its
            graph (``'node'``), a class (``'graph'``) or ``[2]`` classes
            (``'path'``; right only if both steps are).
        output: The output kind.
        ptr: For ``'node'``: the batch's ``ptr`` (first node of each graph).
    """
    check_choice("output", output, OUTPUTS)
    if output == "node":
        if ptr is None:
            raise ValueError("babi_loss(output='node') needs 'ptr' (the "
                             "batch's first node of each graph)")
        target = ptr[:-1] + y.view(-1)
        loss = -out[target].mean()
        batch = torch.repeat_interleave(
            torch.arange(ptr.numel() - 1, device=out.device), ptr.diff())
        others = out.detach().clone()
        others[target] = float("-inf")
        best_other = scatter(others, batch, 0, dim_size=ptr.numel() - 1,
                             reduce="max")
        # right when the answer's probability is above every other node's
        # (a tie counts as wrong)
        correct = (out[target].detach() > best_other).sum()
        return loss, correct
    if output == "graph":
        y = y.view(-1)
        return F.cross_entropy(out, y), (out.argmax(-1) == y).sum()
    y = y.view(-1, PATH_STEPS)
    loss = F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))
    return loss, (out.argmax(-1) == y).all(-1).sum()
