"""The contenders that are not ours, built here and not in the library.

``CITATION_BASELINES`` / ``train_citation_baseline``: the layers a PyG user
would put on Cora or CiteSeer instead (GCN, APPNP, GatedGraphConv), each as
PyG's own example trains it, with our epoch selection; the citation accuracy
benchmark runs them beside our layer (``--baselines``).

PyG's ``GatedGraphConv`` for the graph-level runs (graph classification,
bAbI) is in the library: :func:`pyg_rbp.models.pyg_gated_factory`.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch_geometric.nn import GatedGraphConv


# -- node classification: the layers a PyG user would otherwise pick --------

class _GCN(torch.nn.Module):
    """Kipf & Welling's two-layer GCN as PyG's ``examples/gcn.py`` has it:
    16 hidden channels, dropout 0.5 on the input and the hidden layer."""

    def __init__(self, in_channels: int, classes: int) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv
        self.conv1 = GCNConv(in_channels, 16)
        self.conv2 = GCNConv(16, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor):
        x = torch.nn.functional.dropout(x, 0.5, self.training)
        x = self.conv1(x, edge_index).relu()
        x = torch.nn.functional.dropout(x, 0.5, self.training)
        return self.conv2(x, edge_index)


class _APPNPNet(torch.nn.Module):
    """APPNP as PyG's ``examples/citation/appnp.py`` has it: a two-layer
    MLP (64 hidden, dropout 0.5), then K = 10 steps of personalised
    PageRank with alpha = 0.1 on the logits."""

    def __init__(self, in_channels: int, classes: int) -> None:
        super().__init__()
        from torch_geometric.nn import APPNP
        self.lin1 = torch.nn.Linear(in_channels, 64)
        self.lin2 = torch.nn.Linear(64, classes)
        self.prop = APPNP(K=10, alpha=0.1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor):
        x = torch.nn.functional.dropout(x, 0.5, self.training)
        x = self.lin1(x).relu()
        x = torch.nn.functional.dropout(x, 0.5, self.training)
        return self.prop(self.lin2(x), edge_index)


class _GatedNet(torch.nn.Module):
    """The node classifier of ``examples/citation.py`` with PyG's
    ``GatedGraphConv(64, num_layers=2)`` (its best depth on Cora among 2, 3
    and 5) in place of our layer: the same encoder, dropouts and
    classifier."""

    def __init__(self, in_channels: int, classes: int, input_dropout: float,
                 dropout: float) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(in_channels, 64)
        self.conv = GatedGraphConv(64, num_layers=2)
        self.classifier = torch.nn.Linear(64, classes)
        self.p_in, self.p = input_dropout, dropout

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor):
        drop = torch.nn.functional.dropout
        x = self.encoder(drop(x, self.p_in, self.training)).relu()
        h = self.conv(drop(x, self.p, self.training), edge_index)
        return self.classifier(drop(h, self.p, self.training))


#: name -> (model builder (in_channels, classes, input_dropout, dropout),
#: epochs, weight decay of the first layer only (GCN's) or of all)
CITATION_BASELINES = {
    "pyg-gcn": (lambda i, c, p_in, p: _GCN(i, c), 200, "first"),
    "pyg-appnp": (lambda i, c, p_in, p: _APPNPNet(i, c), 200, "all"),
    "pyg-gated": (_GatedNet, 300, "all"),
}


def train_citation_baseline(name: str, data, seed: int, input_dropout: float,
                            dropout: float, lr: float = 0.01,
                            weight_decay: float = 5e-4) -> Dict[str, float]:
    """Train one baseline full-batch on ``data`` (a Planetoid graph with its
    masks) and return the test accuracy at the best-validation epoch (ties:
    lower validation loss), as our runs select."""
    import time
    import torch.nn.functional as F
    build, epochs, decay = CITATION_BASELINES[name]
    torch.manual_seed(seed)
    model = build(data.num_features, int(data.y.max()) + 1, input_dropout,
                  dropout)
    params = list(model.parameters())
    if decay == "first":
        first = list(model.conv1.parameters())
        groups = [dict(params=first, weight_decay=weight_decay),
                  dict(params=[p for p in params
                               if all(p is not q for q in first)],
                       weight_decay=0.0)]
    else:
        groups = [dict(params=params, weight_decay=weight_decay)]
    opt = torch.optim.Adam(groups, lr=lr)
    best = None
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        opt.zero_grad()
        out = model(data.x, data.edge_index)
        F.cross_entropy(out[data.train_mask],
                        data.y[data.train_mask]).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            out = model(data.x, data.edge_index)
        pred = out.argmax(-1)
        val_acc = float((pred[data.val_mask] == data.y[data.val_mask])
                        .float().mean())
        val_loss = float(F.cross_entropy(out[data.val_mask],
                                         data.y[data.val_mask]))
        test_acc = float((pred[data.test_mask] == data.y[data.test_mask])
                         .float().mean())
        key = (val_acc, -val_loss)
        if best is None or key > best[0]:
            best = (key, test_acc, epoch)
    return {"test_acc": best[1], "val_acc": best[0][0], "best_epoch": best[2],
            "epochs": epochs, "wall_s": time.perf_counter() - start}
