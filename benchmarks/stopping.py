"""Per-graph against batch-wide stopping on mini-batches of graphs, measured
side by side in one process (same weights, same batches, interleaved), so
that the time per epoch compares like with like.

    python -m benchmarks.stopping --dataset MUTAG --epochs 20 \
        --output-json outputs/stopping_mutag.json

Per-graph: each graph of a mini-batch stops (is frozen) once its own
residual is below tol, and the loop ends when all have; once the graphs
still running hold at most half the nodes, F is evaluated on their rows only
(compaction, issue 19). "per-graph, no compaction" evaluates F on the whole
batch to the end, as before issue 19. Batch-wide: one residual norm over the
whole batch. All three iterate plainly (``FixedPointIteration``, whose
``compact_share`` is the compaction's threshold): Anderson, the contractive
step's default solver, mixes each graph on its own but never compacts.
Reported per epoch of training: the
share of batches whose gradient the default hybrid method unrolled (their
forward stopped at the step cap, not at tol), the
loop's steps per batch (what is computed: every step evaluates F on the whole
batch), the mean step at which each graph stopped (F-evaluations a graph
needed), the largest per-graph residual at exit, and the time.
"""
from __future__ import annotations

import statistics
import sys

import torch
from torch_geometric.loader import DataLoader

from pyg_rbp import FixedPointIteration
from pyg_rbp.data import load_tu_dataset
from pyg_rbp.implicit.forward import graph_residual
from pyg_rbp.lightning import GraphClassificationModule
from pyg_rbp.utils.cli import Table, share

from benchmarks import harness


def main() -> int:
    p = harness.parser(__doc__, threads=2)
    p.add_argument("--dataset", default="MUTAG")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args()
    harness.start(a.threads)
    ds = load_tu_dataset(a.dataset, a.data_root, download=False)
    torch.manual_seed(0)
    loader = DataLoader(ds, batch_size=a.batch_size, shuffle=True)
    modules = {}
    compaction = {"per-graph": FixedPointIteration().compact_share,
                  "per-graph, no compaction": 0.0, "batch-wide": 0.0}
    for name, per_graph in (("per-graph", True),
                            ("per-graph, no compaction", True),
                            ("batch-wide", False)):
        torch.manual_seed(0)
        modules[name] = GraphClassificationModule(
            ds.num_features, ds.num_classes, num_edge_types=ds.num_edge_types,
            per_graph_stopping=per_graph,
            solver=FixedPointIteration(compact_share=compaction[name]))
        modules[name].log = lambda *args, **kwargs: None
    for name in ("per-graph, no compaction", "batch-wide"):
        modules[name].load_state_dict(modules["per-graph"].state_dict())
    opts = {k: torch.optim.Adam(m.parameters(), lr=0.005,
                                weight_decay=5e-4)
            for k, m in modules.items()}
    rec = {k: {"epoch_s": [], "batch_steps": [], "graph_steps": [],
               "worst_graph_residual": [], "unrolled": []} for k in modules}
    for epoch in range(a.epochs):
        batches = list(loader)
        # the order rotates every epoch, so that no contender always runs
        # first (cold caches) or last
        names = list(modules)
        order = names[epoch % len(names):] + names[:epoch % len(names)]
        for name in order:
            m = modules[name]
            spent = 0.0
            steps, gsteps, unrolled, worst = [], [], [], 0.0
            for b in batches:
                def one() -> None:
                    opts[name].zero_grad()
                    m.training_step(b, 0).backward()
                    opts[name].step()
                spent += harness.timed(one)[1]
                st = m.model.stats
                steps.append(st.forward_steps)
                unrolled.append(float(st.unrolled))
                gsteps.append(float(st.graph_steps.float().mean())
                              if st.graph_steps is not None
                              else st.forward_steps)
                # the residual of each graph at exit, recomputed per graph
                with torch.no_grad():
                    f, h0 = m.model.conv.fixed_point_map(
                        m.model.encoder(b.x).relu(), b.edge_index,
                        edge_type=b.edge_type)
                    h = m.model.conv(m.model.encoder(b.x).relu(),
                                     b.edge_index,
                                     batch=None if name == "batch-wide"
                                     else b.batch, edge_type=b.edge_type)
                    res = graph_residual(f(h), h, b.batch, b.num_graphs)
                worst = max(worst, float(res.max()))
            rec[name]["epoch_s"].append(spent)
            rec[name]["batch_steps"].append(statistics.mean(steps))
            rec[name]["graph_steps"].append(statistics.mean(gsteps))
            rec[name]["worst_graph_residual"].append(worst)
            rec[name]["unrolled"].append(statistics.mean(unrolled))
    out = {"dataset": a.dataset, "epochs": a.epochs, "threads": a.threads,
           "batch_size": a.batch_size, "note": "epoch time: the training "
           "steps only (the residual check is not timed), mean over the "
           "epochs after the first; contenders interleaved, their order "
           "rotating every epoch", "results": {}}
    table = Table("stopping", "loop steps / batch", "steps a graph needed",
                  "worst graph residual at exit", "unrolled (hybrid)",
                  "s / epoch")
    for name, r in rec.items():
        s = {k: statistics.mean(v) for k, v in r.items()}
        # time: the epochs after the first (one-time costs), when there are
        s["epoch_s"] = statistics.mean(r["epoch_s"][1:] or r["epoch_s"])
        s["worst_graph_residual"] = max(r["worst_graph_residual"])
        out["results"][name] = s
        table.add(name, f"{s['batch_steps']:.2f}", f"{s['graph_steps']:.2f}",
                  f"{s['worst_graph_residual']:.1e}", share(s["unrolled"]),
                  f"{s['epoch_s']:.3f}")
    return harness.finish(a, out, table)


if __name__ == "__main__":
    sys.exit(main())
