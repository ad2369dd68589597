"""Autograd-saved bytes of one training step of the citation model, per
method (the memory column of docs/results.md).

    python benchmarks/citation_memory.py --data-root ../shared/data \
        --output-json benchmarks/results/citation_memory.json
"""
from __future__ import annotations

import argparse
import warnings

import torch

from pyg_rbp import METHODS
from pyg_rbp.data import load_node_dataset
from pyg_rbp.lightning import NodeClassificationModule
from pyg_rbp.utils import SavedTensorMeter, write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--datasets", nargs="+", default=["Cora", "CiteSeer"])
    p.add_argument("--output-json", required=True)
    a = p.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
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
    write_json(a.output_json, out)


if __name__ == "__main__":
    main()
