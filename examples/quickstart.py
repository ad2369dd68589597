"""Quick start: swap GatedGraphConv for RBPGatedGraphConv and train.

Runs offline in seconds on a CPU: a synthetic contextual stochastic block
model (4 communities, noisy features), node classification with a linear
encoder, RBPGatedGraphConv and a linear classifier. Compares the gradient
methods on the same model and prints accuracy, the shares of training calls
whose propagation converged, whose adjoint solve met its tolerance and
which were back-propagated through their steps, and the bytes autograd kept
for the backward pass; then the ConvergenceWarnings each model raised.

    python examples/quickstart.py
    python examples/quickstart.py --method cg --num-layers 50
    python examples/quickstart.py --seeds 0 1 2 3 4   # mean over seeds
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import torch
import torch.nn.functional as F
from torch_geometric.utils import stochastic_blockmodel_graph

from pyg_rbp import METHODS, ConvergenceWarning, RBPGatedGraphConv
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


def train(method: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one model; its test accuracy and what its layer reported."""
    x, edge_index, y, train_idx, test_idx = make_data(seed)
    torch.manual_seed(seed)
    model = Net(16, 32, 4, num_layers=args.num_layers, method=method,
                backward_steps=args.backward_steps, normalize=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for _ in range(args.epochs):
            model.train()
            opt.zero_grad()
            with SavedTensorMeter() as meter:
                out = model(x, edge_index)
            F.cross_entropy(out[train_idx], y[train_idx]).backward()
            opt.step()
            stats = model.conv.stats
    per_epoch = (time.perf_counter() - start) / args.epochs
    model.eval()
    with torch.no_grad():
        pred = model(x, edge_index).argmax(-1)
    return {"acc": float((pred[test_idx] == y[test_idx]).float().mean()),
            "forward_steps": stats.forward_steps,
            "backward_steps": stats.backward_steps,
            "saved_mib": meter.bytes / 2**20, "s_per_epoch": per_epoch,
            **model.conv.monitor.shares(),
            "warnings": [str(w.message) for w in caught
                         if issubclass(w.category, ConvergenceWarning)]}


def percent(value: float) -> str:
    return "-" if value != value else f"{100 * value:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="all",
                        choices=("all", ) + tuple(METHODS))
    parser.add_argument("--num-layers", type=int, default=30)
    parser.add_argument("--backward-steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds to train (the table shows their mean)")
    parser.add_argument("--output-json", default=None,
                        help="write every run's record here")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    # the layer's default first, then the paper's methods and the baselines
    methods = ("hybrid", ) + tuple(m for m in METHODS if m != "hybrid") \
        if args.method == "all" else (args.method, )
    print(f"{'method':<12}{'test acc':>9}{'fwd conv':>9}{'adj ok':>7}"
          f"{'unrolled':>9}{'fwd steps':>10}{'bwd steps':>10}"
          f"{'saved MiB':>10}{'s/epoch':>9}")
    records, notes = {}, {}
    for method in methods:
        runs = [train(method, seed, args) for seed in args.seeds]
        records[method] = runs

        def mean(key: str) -> float:
            values = [r[key] for r in runs if r[key] == r[key]]
            return sum(values) / len(values) if values else float("nan")
        print(f"{method:<12}{mean('acc'):>9.3f}"
              f"{percent(mean('forward_converged')):>9}"
              f"{percent(mean('adjoint_solved')):>7}"
              f"{percent(mean('unrolled')):>9}"
              f"{runs[-1]['forward_steps']:>10}"
              f"{runs[-1]['backward_steps']:>10}"
              f"{mean('saved_mib'):>10.2f}{mean('s_per_epoch'):>9.3f}")
        notes[method] = runs[-1]["warnings"]
    print("\nfwd conv: training calls whose propagation reached tol; adj ok:"
          " adjoint solves that met their tolerance; unrolled: calls whose"
          "\ngradient was back-propagation through the steps (hybrid: those"
          " that did not converge).")
    for method, texts in notes.items():
        for text in texts:
            print(f"[{method}] {text}")
    if args.output_json:
        with open(args.output_json, "w") as fh:
            json.dump({"args": vars(args), "runs": records}, fh, indent=1)


if __name__ == "__main__":
    main()
