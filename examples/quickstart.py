"""Quick start: swap GatedGraphConv for RBPGatedGraphConv and train.

Runs offline in seconds on a CPU: a synthetic contextual stochastic block
model (4 communities, noisy features), node classification with a linear
encoder, a propagation layer and a linear classifier. Compares the gradient
methods of RBPGatedGraphConv on the same model (its default step, a
contraction for every weight value) and prints accuracy, the shares of
training calls whose propagation converged, whose adjoint solve met its
tolerance and which were back-propagated through their steps, and the bytes
autograd kept for the backward pass; then, on the same data with the same
encoder, classifier and optimiser, the layers a PyG user would otherwise
pick (marked as baselines) and the layer's GRU step (its default before
0.2); then the ConvergenceWarnings each model raised.

    python examples/quickstart.py
    python examples/quickstart.py --method cg
    python examples/quickstart.py --seeds 0 1 2 3 4   # mean over seeds
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch_geometric.nn import APPNP, GatedGraphConv, GCNConv
from torch_geometric.utils import stochastic_blockmodel_graph

from pyg_rbp import METHODS, ConvergenceWarning, RBPGatedGraphConv
from pyg_rbp.utils import SavedTensorMeter, write_json
from pyg_rbp.utils.cli import Options, opt, run_main

#: The baselines: (row name, layer builder for ``hidden`` channels). PyG's
#: GatedGraphConv at its best depth on this data (over 5 seeds, 1 / 2 / 3
#: / 5 / 10 / 30 steps gave 0.906 / 0.948 / 0.961 / 0.960 / 0.889 / 0.246).
BASELINES: Dict[str, Callable[[int], torch.nn.Module]] = {
    "GatedGraphConv(3)": lambda c: GatedGraphConv(c, num_layers=3),
    "GCNConv": lambda c: GCNConv(c, c),
    "APPNP(10, 0.1)": lambda c: APPNP(K=10, alpha=0.1),
}


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
                 conv: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(in_channels, hidden)
        # The one line a GatedGraphConv user changes:
        #   self.conv = GatedGraphConv(hidden, num_layers=5)
        self.conv = conv
        self.classifier = torch.nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x).relu()
        return self.classifier(self.conv(h, edge_index))


def ours(method: str, args: "QuickstartOptions", **kwargs) -> Callable:
    """A builder of RBPGatedGraphConv at its defaults but ``method`` (and
    the step count and symmetric normalisation of this example)."""
    return lambda c: RBPGatedGraphConv(c, num_layers=args.num_layers,
                                       method=method,
                                       backward_steps=args.backward_steps,
                                       normalize=True, **kwargs)


def train(method: str, seed: int, args: "QuickstartOptions",
          make_conv: Callable[[int], torch.nn.Module] = None) -> dict:
    """Train one model; its test accuracy and what its layer reported."""
    x, edge_index, y, train_idx, test_idx = make_data(seed)
    torch.manual_seed(seed)
    make_conv = make_conv or ours(method, args)
    model = Net(16, 32, 4, make_conv(32))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    conv = model.conv
    rbp_layer = isinstance(conv, RBPGatedGraphConv)
    stats = None
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
            stats = conv.stats if rbp_layer else None
    per_epoch = (time.perf_counter() - start) / args.epochs
    model.eval()
    with torch.no_grad():
        pred = model(x, edge_index).argmax(-1)
    nan = float("nan")
    shares = conv.monitor.shares() if rbp_layer else dict(
        forward_converged=nan, adjoint_solved=nan, unrolled=nan)
    return {"acc": float((pred[test_idx] == y[test_idx]).float().mean()),
            "forward_steps": stats.forward_steps if stats else None,
            "backward_steps": stats.backward_steps if stats else None,
            "saved_mib": meter.bytes / 2**20, "s_per_epoch": per_epoch,
            **shares,
            "warnings": [str(w.message) for w in caught
                         if issubclass(w.category, ConvergenceWarning)]}


def percent(value: float) -> str:
    return "-" if value != value else f"{100 * value:.0f}%"


def row(name: str, runs: List[dict]) -> str:
    def mean(key: str) -> float:
        values = [r[key] for r in runs if r[key] == r[key]]
        return sum(values) / len(values) if values else float("nan")

    def last(key: str) -> str:
        value = runs[-1][key]
        return "-" if value is None else str(value)
    low = min(r["acc"] for r in runs)
    return (f"{name:<22}{mean('acc'):>9.3f}{low:>9.3f}"
            f"{percent(mean('forward_converged')):>9}"
            f"{percent(mean('adjoint_solved')):>7}"
            f"{percent(mean('unrolled')):>9}"
            f"{last('forward_steps'):>10}{last('backward_steps'):>10}"
            f"{mean('saved_mib'):>10.2f}{mean('s_per_epoch'):>9.3f}")


@dataclass
class QuickstartOptions(Options):
    """The quick start's options (each a flag)."""

    method: str = opt("all", choices=("all", ) + tuple(METHODS),
                      help="a gradient method, or all of them")
    num_layers: int = opt(100, minimum=1,
                          help="the most propagation steps (the layer's "
                               "default)")
    backward_steps: Optional[int] = opt(
        None, minimum=1, help="adjoint iterations (unset: the layer's)")
    epochs: int = opt(50, minimum=1, help="training epochs")
    seeds: List[int] = opt(factory=lambda: [0],
                           help="seeds to train (the table shows their mean)")
    baselines: bool = opt(True, help="also train the PyG layers and the GRU "
                                     "step (--no-baselines: skip them)")
    output_json: Optional[str] = opt(None, metavar="PATH",
                                     help="write every run's record here")


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(QuickstartOptions, compare, argv,
                    __doc__.splitlines()[0])


def compare(args: QuickstartOptions) -> None:
    """Train every method (and the baselines) and print the table."""
    torch.set_num_threads(min(2, torch.get_num_threads()))

    # the layer's default first, then the paper's methods, then the others
    methods = ("hybrid", ) + tuple(m for m in METHODS if m != "hybrid") \
        if args.method == "all" else (args.method, )
    print(f"{'RBPGatedGraphConv':<22}{'test acc':>9}{'min':>9}"
          f"{'fwd conv':>9}{'adj ok':>7}{'unrolled':>9}{'fwd steps':>10}"
          f"{'bwd steps':>10}{'saved MiB':>10}{'s/epoch':>9}")
    records, notes = {}, {}

    def run(name: str, method: str, make_conv=None) -> None:
        runs = [train(method, seed, args, make_conv) for seed in args.seeds]
        records[name] = runs
        print(row(name, runs))
        notes[name] = runs[-1]["warnings"]

    for method in methods:
        run(f"method={method}", method)
    if args.baselines:
        print("baselines (same data, encoder, classifier, optimiser):")
        # the GRU step as this example ran it before 0.2 (at most 30 steps)
        run("cell='gru' (0.1)", "hybrid", lambda c: RBPGatedGraphConv(
            c, num_layers=30, cell="gru", normalize=True))
        for name, make in BASELINES.items():
            run(f"PyG {name}", "-", make)
    print("\nmin: the lowest seed; fwd conv: training calls whose propagation"
          " reached tol; adj ok: adjoint solves\nthat met their tolerance; "
          "unrolled: calls whose gradient was back-propagation through the\n"
          "steps (hybrid: those that did not converge). cell='gru' (0.1): "
          "the layer's GRU step, its default\nbefore version 0.2.")
    for name, texts in notes.items():
        for text in texts:
            print(f"[{name}] {text}")
    if args.output_json:
        write_json(args.output_json, {"args": args.to_dict(),
                                      "runs": records})


if __name__ == "__main__":
    sys.exit(main())
