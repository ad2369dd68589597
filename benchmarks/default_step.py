"""One training step at the layer's defaults: the contractive step (0.2)
against the GRU step as 0.1 shipped it, side by side in one process.

Two workloads, each with both defaults, interleaved (the order alternating)
so that both see the same machine state:

* ``pubmed``: ``RBPGatedGraphConv(64, normalize=True)`` on a random graph of
  PubMed's size (19,717 nodes, 88,648 edges) with random 64-wide inputs;
  a step is forward, ``loss = <h, r>`` (fixed random ``r``), backward and
  Adam's step on the layer's parameters;
* ``mutag``: the model of ``examples/graph_classification.py`` on MUTAG
  batches of 32 graphs (typed edges, gated readout; at 0.1's defaults with
  the spectral Jacobian penalty of weight 1 and at most 30 steps, at 0.2's
  without a penalty and at most 100 steps); a step is zero_grad, the
  module's training step, backward and Adam's step.

Per (workload, default): the median step time, the mean forward and
backward steps per call, what the backward was (``stats.backward_method``)
and the autograd-saved bytes of a step.

    python -m benchmarks.default_step --output-json benchmarks/results/default_step.json
"""
from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable, Dict, List

import torch

from pyg_rbp import RBPGatedGraphConv
from pyg_rbp.utils import SavedTensorMeter
from pyg_rbp.utils.cli import Table

from benchmarks import harness

#: The layer's options at each default (beside the task's own settings).
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "0.1 (cell='gru')": dict(cell="gru"),
    "0.2 (contractive)": dict(),
}


def pubmed_steps(threads: int) -> Dict[str, Callable[[], Dict[str, Any]]]:
    """One training step per default on a PubMed-size random graph."""
    gen = torch.Generator().manual_seed(0)
    n, e, c = 19717, 88648, 64
    edge_index = torch.randint(0, n, (2, e), generator=gen)
    x = torch.randn(n, c, generator=gen)
    r = torch.randn(n, c, generator=gen)
    steps = {}
    for name, options in DEFAULTS.items():
        torch.manual_seed(0)
        conv = RBPGatedGraphConv(c, normalize=True, **options)
        opt = torch.optim.Adam(conv.parameters(), lr=0.01)

        def step(conv=conv, opt=opt) -> Dict[str, Any]:
            opt.zero_grad()
            with SavedTensorMeter() as meter:
                h = conv(x, edge_index)
            (h * r).sum().backward()
            opt.step()
            return {"saved_bytes": meter.bytes, **_stats(conv.stats)}
        steps[name] = step
    return steps


def mutag_steps(data_root: str) -> Dict[str, Callable[[], Dict[str, Any]]]:
    """One training step per default on MUTAG batches of 32."""
    from torch_geometric.loader import DataLoader

    from pyg_rbp.data import load_tu_dataset
    from pyg_rbp.lightning import GraphClassificationModule
    from pyg_rbp.lightning.graph_run import GraphTrainConfig

    ds = load_tu_dataset("MUTAG", data_root, download=False)
    torch.manual_seed(0)
    batches = list(DataLoader(ds, batch_size=32, shuffle=True))
    steps = {}
    for name, options in DEFAULTS.items():
        cfg = GraphTrainConfig(dataset="MUTAG", **options)
        if options.get("cell") == "gru":
            cfg.num_layers = 30  # 0.1's default for the runs
        cfg.check()
        torch.manual_seed(0)
        module = GraphClassificationModule(
            ds.num_features, ds.num_classes,
            num_edge_types=ds.num_edge_types, hidden_channels=cfg.hidden,
            readout=cfg.readout, dropout=cfg.dropout, lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            per_graph_stopping=cfg.per_graph_stopping,
            jacobian_weight=cfg.jacobian_weight, normalize=cfg.normalize,
            **cfg.layer_options())
        module.log = lambda *args, **kwargs: None
        opt = torch.optim.Adam(module.parameters(), lr=cfg.lr,
                               weight_decay=cfg.weight_decay)
        state = {"i": 0}

        def step(module=module, opt=opt, state=state) -> Dict[str, Any]:
            batch = batches[state["i"] % len(batches)]
            state["i"] += 1
            opt.zero_grad()
            # the module meters its own forward (an outer meter would see
            # nothing): its peak, reset per step, is this step's bytes
            module.peak_saved_bytes = 0
            loss = module.training_step(batch, 0)
            loss.backward()
            opt.step()
            return {"saved_bytes": module.peak_saved_bytes,
                    **_stats(module.model.stats)}
        steps[name] = step
    return steps


def _stats(stats) -> Dict[str, Any]:
    return {"forward_steps": stats.forward_steps,
            "backward_steps": stats.backward_steps,
            "backward_method": stats.backward_method}


def measure(steps: Dict[str, Callable[[], Dict[str, Any]]], reps: int,
            warmup: int) -> Dict[str, Dict[str, Any]]:
    times: Dict[str, List[float]] = {k: [] for k in steps}
    records: Dict[str, List[Dict[str, Any]]] = {k: [] for k in steps}
    for i in range(warmup + reps):
        order = list(steps) if i % 2 == 0 else list(reversed(steps))
        for name in order:
            start = time.perf_counter()
            rec = steps[name]()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times[name].append(elapsed)
                records[name].append(rec)
    out = {}
    for name, recs in records.items():
        methods = sorted({r["backward_method"] for r in recs})
        out[name] = {
            "median_ms": 1e3 * statistics.median(times[name]),
            "mean_forward_steps": statistics.mean(r["forward_steps"]
                                                  for r in recs),
            "mean_backward_steps": statistics.mean(
                r["backward_steps"] or 0 for r in recs),
            "backward_methods": methods,
            "max_saved_mib": max(r["saved_bytes"] for r in recs) / 2**20,
            "reps": len(recs)}
    return out


def main() -> int:
    p = harness.parser(__doc__)
    p.add_argument("--workloads", nargs="+", default=["pubmed", "mutag"],
                   choices=("pubmed", "mutag"))
    p.add_argument("--reps", type=int, default=10,
                   help="measured steps per default (pubmed)")
    p.add_argument("--mutag-reps", type=int, default=60,
                   help="measured steps per default (mutag: 10 epochs)")
    a = p.parse_args()
    harness.start(a.threads)
    results: Dict[str, Any] = {"threads": a.threads}
    if "pubmed" in a.workloads:
        results["pubmed"] = measure(pubmed_steps(a.threads), a.reps, 2)
    if "mutag" in a.workloads:
        results["mutag"] = measure(mutag_steps(a.data_root), a.mutag_reps,
                                   12)
    table = Table("workload", "default", "ms / step", "forward steps",
                  "backward steps (methods)", "saved MiB")
    for workload in a.workloads:
        for name, r in results[workload].items():
            table.add(workload, name, f"{r['median_ms']:.1f}",
                      f"{r['mean_forward_steps']:.1f}",
                      f"{r['mean_backward_steps']:.1f} "
                      f"({'/'.join(r['backward_methods'])})",
                      f"{r['max_saved_mib']:.1f}")
    return harness.finish(a, results, table)


if __name__ == "__main__":
    sys.exit(main())
