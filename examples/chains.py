"""Long-range dependencies: the chains benchmark of implicit GNNs.

    python examples/chains.py --length 100 --classes 2 --method neumann
    python examples/chains.py --length 200 --classes 3 --seeds 5 \
        --output-json results/chains_L200_c3.json --plot plots/
    python examples/chains.py --length 100 --model ignn        # IGNN-style
    python examples/chains.py --length 50 --model pyg           # GatedGraphConv

Each node of a directed chain of L nodes must output its chain's class, which
only the head node sees (pyg_rbp.data.chains). Models (``--model``):

* ``rbp``: linear encoder, RBPGatedGraphConv (T forward steps, gradient by
  ``--method``, the layer's default ``hybrid`` unless given; its default
  contractive step, or ``--cell gru`` with ``state_init="identity"``, which
  keeps the head's signal alive along the chain), linear classifier;
* ``pyg``: the same with PyG's GatedGraphConv, ``num_layers = L`` (untied
  weights, back-propagation through all L steps);
* ``ignn``: the IGNN layer, H = ReLU(A H W^T + A X U^T + b) with
  ||W||_inf <= kappa / rho(A), projected after each step, through our rbp().

Full-batch Adam; every epoch is scored on validation and test; the figure is
the test accuracy at the best validation epoch (ties: lower validation
loss). Training stops early once validation accuracy is 100 % or after
``--patience`` epochs without improvement. Results: docs/long_range.md.
"""
from __future__ import annotations

import dataclasses
import resource
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch_geometric.nn import GatedGraphConv

from pyg_rbp import METHODS, SOLVERS, ConvergenceWarning
from pyg_rbp.nn.gated_graph_conv import CELLS
from pyg_rbp.data.chains import chains
from pyg_rbp.models import RBPNodeClassifier
from pyg_rbp.nn import IGNNConv
from pyg_rbp.utils import SavedTensorMeter, write_json
from pyg_rbp.utils.cli import Options, opt, parse_config, run_main

MODELS = ("rbp", "pyg", "ignn")


class PyGChainModel(torch.nn.Module):
    """Encoder, PyG's GatedGraphConv with L untied steps, classifier."""

    def __init__(self, in_channels: int, hidden: int, classes: int,
                 steps: int) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(in_channels, hidden)
        self.conv = GatedGraphConv(hidden, steps)
        self.classifier = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor):
        return self.classifier(self.conv(self.encoder(x).relu(), edge_index))


class IGNNChainModel(torch.nn.Module):
    """IGNNConv on the raw features, then a linear classifier."""

    def __init__(self, in_channels: int, hidden: int, classes: int,
                 **kwargs: Any) -> None:
        super().__init__()
        self.conv = IGNNConv(in_channels, hidden, **kwargs)
        self.classifier = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor):
        return self.classifier(self.conv(x, edge_index))


def defaults_for(length: int) -> Dict[str, int]:
    """T scales with L: the forward needs more than L steps to reach the
    tail of a directed chain. K does not: a K-term Neumann series carries the
    gradient only K hops, but with state_init="identity" each hop learns to
    keep the head's pattern, which the nodes near the head teach; K = 5
    already reaches 100 % at L = 100 (docs/long_range.md has the K sweep)."""
    return {"num_layers": 2 * length + 20, "backward_steps": 20}


def build_model(a: "ChainsOptions", in_channels: int,
                classes: int) -> torch.nn.Module:
    if a.model == "pyg":
        return PyGChainModel(in_channels, a.hidden, classes, a.length)
    if a.model == "ignn":
        return IGNNChainModel(in_channels, a.hidden, classes,
                              kappa=a.kappa, num_layers=a.num_layers,
                              method=a.method, tol=a.tol,
                              backward_steps=a.backward_steps)
    step = dict(state_init=a.state_init, identity_gain=a.identity_gain) \
        if a.cell == "gru" else {} if a.carry is None else dict(carry=a.carry)
    return RBPNodeClassifier(
        in_channels, a.hidden, classes, input_dropout=0.0, dropout=a.dropout,
        out_propagation=0, num_layers=a.num_layers, method=a.method,
        tol=a.tol, solver=a.solver, backward_steps=a.backward_steps,
        cell=a.cell, **step,
        jacobian_penalty="spectral" if a.jacobian_weight > 0 else None)


def _scores(out: torch.Tensor, data, mask: str) -> Dict[str, float]:
    m = data[mask]
    return {"acc": float((out[m].argmax(-1) == data.y[m]).float().mean()),
            "loss": float(F.cross_entropy(out[m], data.y[m]))}


def run_seed(a: "ChainsOptions", seed: int) -> Dict[str, Any]:
    data = chains(a.classes, a.chains_per_class, a.length, a.features,
                  directed=not a.undirected, feature_noise=a.noise,
                  seed=seed)
    torch.manual_seed(seed)
    device = torch.device(a.device)
    data = data.to(device)
    model = build_model(a, data.num_features, a.classes).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr,
                           weight_decay=a.weight_decay)
    conv = model.conv
    history: List[Dict[str, float]] = []
    best: Optional[Dict[str, float]] = None
    saved = 0
    start = time.perf_counter()
    for epoch in range(a.max_epochs):
        model.train()
        opt.zero_grad()
        with SavedTensorMeter() as meter:
            out = model(data.x, data.edge_index)
        saved = max(saved, meter.bytes)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        stats = getattr(conv, "stats", None)
        if a.jacobian_weight > 0 and stats is not None and \
                stats.jacobian_penalty is not None:
            loss = loss + a.jacobian_weight * stats.jacobian_penalty
        loss.backward()
        opt.step()
        if a.model == "ignn":
            conv.project_()
        record = {"epoch": epoch, "train_loss": float(loss.detach())}
        if stats is not None:
            record.update(fwd_steps=stats.forward_steps,
                          fwd_residual=stats.forward_residual,
                          bwd_steps=stats.backward_steps or 0,
                          converged=bool(stats.converged),
                          unrolled=stats.unrolled)
        model.eval()
        with torch.no_grad():
            out = model(data.x, data.edge_index)
        for split in ("train", "val", "test"):
            s = _scores(out, data, f"{split}_mask")
            record[f"{split}_acc"], record[f"{split}_loss"] = s["acc"], \
                s["loss"]
        history.append(record)
        key = (record["val_acc"], -record["val_loss"])
        if best is None or key > (best["val_acc"], -best["val_loss"]):
            best = record
        if record["val_acc"] == 1.0 or \
                epoch - best["epoch"] >= a.patience:
            break
    wall = time.perf_counter() - start
    assert best is not None
    fwd = [h["fwd_steps"] for h in history if "fwd_steps" in h]
    bwd = [h["bwd_steps"] for h in history if "bwd_steps" in h]
    return {"seed": seed, "test_acc": best["test_acc"],
            "val_acc": best["val_acc"], "best_epoch": best["epoch"],
            "epochs": len(history), "wall_s": wall,
            "epoch_s": wall / len(history),
            "saved_bytes": saved,
            "peak_rss_bytes": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_cuda_bytes": int(torch.cuda.max_memory_allocated(device))
            if device.type == "cuda" else None,
            "mean_forward_steps": statistics.mean(fwd) if fwd else None,
            "mean_backward_steps": statistics.mean(bwd) if bwd else None,
            "final_forward_residual": history[-1].get("fwd_residual"),
            # shares of the training calls: forward reached tol; gradient
            # by back-propagation through the steps (the hybrid's fallback)
            "forward_converged": _share(history, "converged"),
            "unrolled": _share(history, "unrolled"),
            "nodes": data.num_nodes, "history": history}


def _share(history: List[Dict[str, Any]], key: str) -> Optional[float]:
    """The share of epochs whose record has ``key`` true (``None`` where no
    record has it: a model without stats)."""
    flags = [h[key] for h in history if key in h]
    return sum(flags) / len(flags) if flags else None


def _mean_of(seeds: List[Dict[str, Any]], key: str) -> Optional[float]:
    values = [s[key] for s in seeds if s.get(key) is not None]
    return statistics.mean(values) if values else None


@dataclass
class ChainsOptions(Options):
    """The benchmark's options (each a flag: ``--chains-per-class`` ...)."""

    length: int = opt(100, minimum=1, help="L")
    classes: int = opt(2, minimum=2, help="classes (>= 2)")
    chains_per_class: int = opt(20, minimum=1, help="chains per class")
    features: int = opt(100, minimum=1, help="node features")
    undirected: bool = opt(False, help="undirected chains")
    noise: float = opt(0.0, nonnegative=True,
                       help="feature noise standard deviation")
    model: str = opt("rbp", choices=MODELS, help="the model (see above)")
    method: str = opt("hybrid", choices=METHODS,
                      help="gradient method (--model rbp, ignn)")
    solver: Optional[str] = opt(
        None, choices=SOLVERS,
        help="forward solver (unset: the layer's: anderson for the "
             "contractive step, fixed_point for the GRU)")
    cell: str = opt("contractive", choices=CELLS,
                    help="the layer's step (--model rbp)")
    carry: Optional[float] = opt(
        None, help="the contractive step's carry gate (unset: the layer's "
                   "0.9)")
    seeds: int = opt(3, minimum=1, help="run seeds 0 .. S-1")
    hidden: int = opt(16, minimum=1, help="hidden channels")
    num_layers: Optional[int] = opt(None, minimum=1,
                                    help="T (unset: 2L + 20)")
    backward_steps: Optional[int] = opt(None, minimum=1,
                                        help="K (unset: 20)")
    tol: float = opt(1e-6, nonnegative=True, help="forward tolerance")
    max_epochs: int = opt(300, minimum=1,
                          help="most epochs (training stops early)")
    patience: int = opt(100, minimum=1,
                        help="epochs without a better validation score")
    lr: float = opt(0.01, nonnegative=True, help="Adam's learning rate")
    weight_decay: float = opt(0.0, nonnegative=True,
                              help="Adam's weight decay")
    dropout: float = opt(0.0, nonnegative=True, help="dropout")
    jacobian_weight: float = opt(0.0, nonnegative=True,
                                 help="the Jacobian penalty's weight")
    state_init: str = opt("identity", choices=("identity", "contractive"),
                          help="initialisation of the GRU step (--cell gru)")
    identity_gain: float = opt(3.0, help="its gain (--cell gru)")
    kappa: float = opt(0.9, help="IGNN's bound on ||W||_inf rho(A)")
    threads: int = opt(2, minimum=1, help="torch threads")
    device: str = opt("cpu", help="cpu or cuda (then the JSON also has "
                                  "each seed's peak_cuda_bytes, max "
                                  "allocated)")
    output_json: Optional[str] = opt(None, metavar="PATH",
                                     help="write the report here")
    plot: Optional[str] = opt(None, metavar="DIR",
                              help="write the training curves here")

    def check(self) -> None:
        super().check()
        if self.model == "pyg" and self.method not in ("hybrid", "neumann",
                                                       "bptt"):
            raise ValueError("--model pyg trains by BPTT through L untied "
                             "steps; --method does not apply (got "
                             f"{self.method!r})")

    def resolved(self) -> "ChainsOptions":
        """The options with the length's defaults filled in (T, K) and
        PyG's layer's method (BPTT)."""
        d = defaults_for(self.length)
        return dataclasses.replace(
            self, num_layers=self.num_layers or d["num_layers"],
            backward_steps=self.backward_steps or d["backward_steps"],
            method="bptt" if self.model == "pyg" else self.method)


DESCRIPTION = "Chains: long-range node classification."


def parse_args(argv: Optional[List[str]] = None) -> ChainsOptions:
    """The checked, resolved options of ``argv`` (for scripts and tests)."""
    cfg, _ = parse_config(ChainsOptions, argv, DESCRIPTION)
    cfg.check()
    return cfg.resolved()


def plot(result: Dict[str, Any], out_dir: str) -> None:
    from pyg_rbp.lightning.plots import _pyplot
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for rec in result["seeds"]:
        h = rec["history"]
        x = [e["epoch"] + 1 for e in h]
        ax_acc.plot(x, [e["test_acc"] for e in h], label=f"seed {rec['seed']}")
        ax_loss.semilogy(x, [e["train_loss"] for e in h])
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.legend()
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    cfg = result["config"]
    fig.suptitle(f"chains L={cfg['length']}, {cfg['classes']} classes, "
                 f"{cfg['model']}/{cfg['method']}")
    fig.tight_layout()
    fig.savefig(out / f"chains_L{cfg['length']}_c{cfg['classes']}_"
                f"{cfg['model']}_{cfg['method']}.png", dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(ChainsOptions, lambda cfg: run(cfg.resolved()), argv,
                    DESCRIPTION)


def run(a: ChainsOptions) -> int:
    """Train the seeds, write the report after each, print the summary."""
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # saturated gates: see lightning/base.py
    warnings.simplefilter("once", ConvergenceWarning)
    seeds: List[Dict[str, Any]] = []
    for s in range(a.seeds):
        seeds.append(run_seed(a, s))
        result = summarise(a, seeds)
        if a.output_json:  # after every seed: a long run keeps what it did
            path = Path(a.output_json)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, result)
    if a.plot:
        plot(result, a.plot)
    print(f"chains L={a.length} classes={a.classes} {a.model}/{a.method}: "
          f"test acc {100 * result['test_acc']:.1f} ± "
          f"{100 * result['test_acc_std']:.1f} % over {a.seeds} seed(s); "
          f"forward steps {result['forward_steps']:.0f}, backward steps "
          f"{result['backward_steps']:.0f}, "
          f"{_percent(result['forward_converged'])} of training calls "
          f"converged, {_percent(result['unrolled'])} unrolled, "
          f"autograd-saved "
          f"{result['saved_bytes'] / 2**20:.1f} MiB, "
          f"{result['epoch_s']:.3f} s/epoch")
    return 0


def _percent(share: Optional[float]) -> str:
    return "n/a" if share is None else f"{100 * share:.0f} %"


def summarise(a: ChainsOptions,
              seeds: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The JSON report over the seeds run so far."""
    accs = [s["test_acc"] for s in seeds]
    return {"test_acc": statistics.mean(accs),
            "test_acc_std": statistics.pstdev(accs) if len(accs) > 1
            else 0.0,
            "seeds": seeds, "config": a.to_dict(),
            "forward_steps": statistics.mean(
                s["mean_forward_steps"] or 0 for s in seeds),
            "backward_steps": statistics.mean(
                s["mean_backward_steps"] or 0 for s in seeds),
            "forward_converged": _mean_of(seeds, "forward_converged"),
            "unrolled": _mean_of(seeds, "unrolled"),
            "saved_bytes": max(s["saved_bytes"] for s in seeds),
            "peak_rss_bytes": max(s["peak_rss_bytes"] for s in seeds),
            "epoch_s": statistics.mean(s["epoch_s"] for s in seeds),
            "seeds_run": len(seeds)}


if __name__ == "__main__":
    sys.exit(main())
