"""Quick start: swap GatedGraphConv for RBPGatedGraphConv and train.

Runs offline in seconds on a CPU: a synthetic contextual stochastic block
model (4 communities, noisy features), node classification with a linear
encoder, RBPGatedGraphConv and a linear classifier. Compares the gradient
methods on the same model and prints accuracy, solver statistics and the
bytes autograd kept for the backward pass.

    python examples/quickstart.py
    python examples/quickstart.py --method cg --num-layers 50
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch_geometric.utils import stochastic_blockmodel_graph

from pyg_rbp import METHODS, RBPGatedGraphConv
from pyg_rbp.utils import SavedTensorMeter


def make_data(seed: int, num_classes: int = 4, per_class: int = 100):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sizes = [per_class] * num_classes
    probs = torch.full((num_classes, num_classes), 0.005)
    probs.fill_diagonal_(0.05)
    edge_index = stochastic_blockmodel_graph(sizes, probs, directed=False)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    means = torch.randn(num_classes, 16, generator=gen)
    x = means[y] + 2.0 * torch.randn(len(y), 16, generator=gen)
    perm = torch.randperm(len(y), generator=gen)
    train, test = perm[:len(y) // 5], perm[len(y) // 5:]
    return x, edge_index, y, train, test


class Net(torch.nn.Module):
    def __init__(self, in_channels: int, hidden: int, num_classes: int,
                 **conv_kwargs) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(in_channels, hidden)
        # The one line a GatedGraphConv user changes:
        self.conv = RBPGatedGraphConv(hidden, **conv_kwargs)
        self.classifier = torch.nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x).relu()
        return self.classifier(self.conv(h, edge_index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="all",
                        choices=("all", ) + tuple(METHODS))
    parser.add_argument("--num-layers", type=int, default=30)
    parser.add_argument("--backward-steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    x, edge_index, y, train, test = make_data(args.seed)
    methods = METHODS if args.method == "all" else (args.method, )
    print(f"{'method':<12}{'test acc':>9}{'fwd steps':>10}{'bwd steps':>10}"
          f"{'saved MiB':>10}{'s/epoch':>9}")
    for method in methods:
        torch.manual_seed(args.seed)
        model = Net(16, 32, 4, num_layers=args.num_layers, method=method,
                    backward_steps=args.backward_steps, normalize=True)
        opt = torch.optim.Adam(model.parameters(), lr=0.01,
                               weight_decay=5e-4)
        start = time.perf_counter()
        for epoch in range(args.epochs):
            model.train()
            opt.zero_grad()
            with SavedTensorMeter() as meter:
                out = model(x, edge_index)
            F.cross_entropy(out[train], y[train]).backward()
            opt.step()
            train_stats = model.conv.stats
        per_epoch = (time.perf_counter() - start) / args.epochs
        model.eval()
        with torch.no_grad():
            pred = model(x, edge_index).argmax(-1)
        acc = float((pred[test] == y[test]).float().mean())
        print(f"{method:<12}{acc:>9.3f}{train_stats.forward_steps:>10}"
              f"{train_stats.backward_steps:>10}"
              f"{meter.bytes / 2**20:>10.2f}{per_epoch:>9.3f}")


if __name__ == "__main__":
    main()
