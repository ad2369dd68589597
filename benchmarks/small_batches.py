"""One training step on small batches of small graphs: ours at the defaults
of ``examples/graph_classification.py`` (``GraphTrainConfig``) against
PyG's ``GatedGraphConv`` (8 untied steps, BPTT) with the same encoder,
readout and head, measured side by side in one process (same batches,
interleaved, the order alternating).

    python -m benchmarks.small_batches --dataset MUTAG --batch-size 32 \
        --output-json outputs/small_batches_mutag.json
    python -m benchmarks.small_batches --dataset NCI1 --batch-size 128 \
        --profile

A step is ``zero_grad``, ``training_step(...).backward()`` and Adam's
``step``; the time is the median over the measured batches (after
``--warmup`` epochs). ``--profile`` prints where our step's time goes
(``torch.profiler``, CPU, sorted by self time).
"""
from __future__ import annotations

import statistics
import sys
from typing import Dict, List

import torch
from torch_geometric.loader import DataLoader

from pyg_rbp.data import load_tu_dataset
from pyg_rbp.lightning import GraphClassificationModule
from pyg_rbp.lightning.graph_run import GraphTrainConfig
from pyg_rbp.models import pyg_gated_factory
from pyg_rbp.utils import write_json

from benchmarks import harness


def main() -> int:
    p = harness.parser(__doc__)
    p.add_argument("--dataset", default="MUTAG")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--pyg-layers", type=int, default=8)
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    harness.start(a.threads)
    ds = load_tu_dataset(a.dataset, a.data_root, download=False)
    cfg = GraphTrainConfig(dataset=a.dataset)
    torch.manual_seed(0)
    loader = DataLoader(ds, batch_size=a.batch_size, shuffle=True)
    common = dict(hidden_channels=cfg.hidden, readout=cfg.readout,
                  dropout=cfg.dropout, lr=cfg.lr,
                  weight_decay=cfg.weight_decay,
                  per_graph_stopping=cfg.per_graph_stopping)
    modules = {
        "ours": GraphClassificationModule(
            ds.num_features, ds.num_classes,
            num_edge_types=ds.num_edge_types if cfg.edge_types else 1,
            jacobian_weight=cfg.jacobian_weight, normalize=cfg.normalize,
            **cfg.layer_options(), **common),
        "pyg": GraphClassificationModule(
            ds.num_features, ds.num_classes, num_edge_types=1,
            conv=pyg_gated_factory(a.pyg_layers),
            **common),
    }
    for m in modules.values():
        m.log = lambda *args, **kwargs: None
    opts = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr,
                                weight_decay=cfg.weight_decay)
            for k, m in modules.items()}

    def step(name: str, b) -> float:
        def one() -> None:
            opts[name].zero_grad()
            modules[name].training_step(b, 0).backward()
            opts[name].step()
        return harness.timed(one)[1]

    times: Dict[str, List[float]] = {k: [] for k in modules}
    fwd_steps: List[float] = []
    for epoch in range(a.warmup + a.epochs):
        for i, b in enumerate(loader):
            order = list(modules) if (epoch + i) % 2 == 0 else \
                list(reversed(modules))
            for name in order:
                t = step(name, b)
                if epoch >= a.warmup:
                    times[name].append(t)
                    if name == "ours":
                        fwd_steps.append(
                            modules[name].model.stats.forward_steps)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ratio = med["ours"] / med["pyg"]
    print(f"{a.dataset}, batch {a.batch_size}, {a.threads} thread(s): ours "
          f"{med['ours']:.1f} ms ({statistics.mean(fwd_steps):.1f} forward "
          f"steps), PyG GatedGraphConv ({a.pyg_layers} steps) "
          f"{med['pyg']:.1f} ms per training step: {ratio:.2f}x")
    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        batches = list(loader)[:20]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batches:
                step("ours", b)
        print(prof.key_averages().table(sort_by="self_cpu_time_total",
                                        row_limit=30))
    if a.output_json:
        write_json(a.output_json, {
            "dataset": a.dataset, "batch_size": a.batch_size,
            "threads": a.threads, "epochs": a.epochs, "warmup": a.warmup,
            "pyg_layers": a.pyg_layers, "ours_ms": med["ours"],
            "pyg_ms": med["pyg"], "ratio": ratio,
            "ours_forward_steps": statistics.mean(fwd_steps),
            "note": "median time of one training step (zero_grad, "
                    "forward, backward, Adam) over the batches after the "
                    "warm-up epoch; contenders interleaved"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
