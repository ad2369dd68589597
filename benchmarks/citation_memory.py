"""Autograd-saved bytes of one training step of the citation model, per
method (the memory column of docs/results.md).

    python -m benchmarks.citation_memory --output-json outputs/memory.json
"""
from __future__ import annotations

import torch

from pyg_rbp import METHODS
from pyg_rbp.data import load_node_dataset
from pyg_rbp.lightning import NodeClassificationModule
from pyg_rbp.utils import SavedTensorMeter, write_json

from benchmarks import harness


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--datasets", nargs="+", default=["Cora", "CiteSeer"])
    a = p.parse_args()
    harness.start(a.threads)
    out = []
    for name in a.datasets:
        data = load_node_dataset(name, a.data_root, download=False)
        for method in METHODS:
            torch.manual_seed(0)
            # the defaults of examples/citation.py, with T = 30 steps run in
            # full (tol = 0) so every method keeps what T steps need
            module = NodeClassificationModule(
                data.num_features, data.num_classes, num_layers=30,
                backward_steps=10, method=method, tol=0.0)
            module.train()
            with SavedTensorMeter() as meter:
                module(data.x, data.edge_index)
            out.append({"dataset": name, "method": method,
                        "saved_bytes": meter.bytes})
            print(f"{name:9} {method:12} {meter.bytes / 2**20:8.1f} MiB")
    if a.output_json:
        write_json(a.output_json, out)


if __name__ == "__main__":
    main()
