"""Which fixed point: the families of issue 34 on the quick start's data.

A map that contracts by construction (the contractive step, with its
options) against the GRU step kept contractive by the cheap means the field
uses (the hybrid's fallback to BPTT, Anderson's forward solver, a Jacobian
penalty in the loss: spectral or Frobenius, torchdeq / locuslab-deq style),
all in the quick start's model (``examples/quickstart.py``: the same data,
encoder, classifier, Adam settings, 50 epochs), 5 seeds. Per family: test
accuracy (mean, lowest seed), the share of training calls whose forward
reached ``tol``, the share unrolled, forward steps, the peak autograd-saved
memory of a training step and the time per epoch.

    python -m benchmarks.wellposed --output-json outputs/wellposed.json

Results: docs/methods.md ("The step: a contraction by construction").
"""
from __future__ import annotations

import statistics
import sys
import time
import warnings
from typing import Any, Dict, List

import torch
import torch.nn.functional as F

from pyg_rbp import ConvergenceWarning, RBPGatedGraphConv
from pyg_rbp.utils import SavedTensorMeter
from pyg_rbp.utils.cli import Table, share

from benchmarks import harness

# the quick start's data and model, read from the example itself
quickstart = harness.example("quickstart")

#: family -> (layer options, weight of stats.jacobian_penalty in the loss)
FAMILIES: Dict[str, tuple] = {
    "contractive (default)": (dict(), 0.0),
    "contractive, carry 0.95": (dict(carry=0.95), 0.0),
    "contractive, gate='input'": (dict(gate="input"), 0.0),
    "gru, hybrid (the 0.1 default)": (dict(cell="gru", num_layers=30), 0.0),
    "gru, hybrid, T = 100": (dict(cell="gru"), 0.0),
    "gru + anderson": (dict(cell="gru", solver="anderson"), 0.0),
    "gru + spectral penalty 1": (dict(cell="gru",
                                      jacobian_penalty="spectral"), 1.0),
    "gru + frobenius penalty 1": (dict(cell="gru",
                                       jacobian_penalty="frobenius"), 1.0),
}


def train(options: Dict[str, Any], weight: float, seed: int,
          epochs: int) -> Dict[str, Any]:
    x, edge_index, y, train_idx, test_idx = quickstart.make_data(seed)
    torch.manual_seed(seed)
    model = quickstart.Net(16, 32, 4,
                           RBPGatedGraphConv(32, normalize=True, **options))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    conv = model.conv
    steps: List[int] = []
    peak = 0
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        with SavedTensorMeter() as meter:
            out = model(x, edge_index)
        loss = F.cross_entropy(out[train_idx], y[train_idx])
        if weight > 0 and conv.stats.jacobian_penalty is not None:
            loss = loss + weight * conv.stats.jacobian_penalty
        loss.backward()
        opt.step()
        peak = max(peak, meter.bytes)
        steps.append(conv.stats.forward_steps)
    wall = (time.perf_counter() - start) / epochs
    model.eval()
    with torch.no_grad():
        pred = model(x, edge_index).argmax(-1)
    return {"seed": seed,
            "acc": float((pred[test_idx] == y[test_idx]).float().mean()),
            "mean_forward_steps": statistics.mean(steps),
            "peak_saved_mib": peak / 2**20, "s_per_epoch": wall,
            **conv.monitor.shares()}


def table(results: Dict[str, List[Dict[str, Any]]]) -> str:
    out = Table("family", "test acc (mean)", "lowest seed",
                "forward converged", "unrolled", "forward steps",
                "peak saved MiB", "s / epoch")
    for name, runs in results.items():
        def mean(key: str) -> float:
            return statistics.mean(r[key] for r in runs)
        out.add(name, f"{mean('acc'):.3f}",
                f"{min(r['acc'] for r in runs):.3f}",
                share(mean("forward_converged")), share(mean("unrolled")),
                f"{mean('mean_forward_steps'):.1f}",
                f"{max(r['peak_saved_mib'] for r in runs):.2f}",
                f"{mean('s_per_epoch'):.3f}")
    return str(out)


def main() -> int:
    p = harness.parser(__doc__, data=False)
    p.add_argument("--families", nargs="+", default=list(FAMILIES),
                   choices=list(FAMILIES), metavar="FAMILY")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=50)
    a = p.parse_args()
    harness.start(a.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    results: Dict[str, List[Dict[str, Any]]] = {}
    for name in a.families:
        options, weight = FAMILIES[name]
        results[name] = [train(options, weight, seed, a.epochs)
                         for seed in range(a.seeds)]
        print(f"{name}: {statistics.mean(r['acc'] for r in results[name]):.3f}",
              flush=True)
    return harness.finish(a, {"args": vars(a), "results": results},
                          table(results))


if __name__ == "__main__":
    sys.exit(main())
