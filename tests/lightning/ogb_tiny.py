"""A tiny graph written in OGB's on-disk format as ``ogbn-arxiv``.

OGB data cannot be downloaded here, so tests write this one: the same files
(``raw/*.csv.gz``, ``split/time/*.csv.gz``, ``RELEASE_v1.txt``) that OGB's
``PygNodePropPredDataset('ogbn-arxiv')`` reads, with a learnable labelling.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def _write(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        for row in rows:
            if np.ndim(row) == 0:
                fh.write(f"{row}\n")
            else:
                fh.write(",".join(str(v) for v in row) + "\n")


def write_tiny_ogbn_arxiv(root: Path, num_nodes: int = 120,
                          num_features: int = 8, seed: int = 0) -> Path:
    """Write ``<root>/ogb/ogbn_arxiv`` and return the data root."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "ogb" / "ogbn_arxiv"
    labels = rng.integers(0, 3, num_nodes)  # 3 of arxiv's 40 classes used
    centres = rng.normal(size=(3, num_features))
    feats = centres[labels] + 0.5 * rng.normal(size=(num_nodes, num_features))
    edges = []
    for i in range(num_nodes):  # mostly same-class neighbours
        for _ in range(3):
            same = np.flatnonzero(labels == labels[i])
            j = int(rng.choice(same)) if rng.random() < 0.8 else \
                int(rng.integers(num_nodes))
            if j != i:
                edges.append((i, j))
    raw = folder / "raw"
    _write(raw / "edge.csv.gz", edges)
    _write(raw / "node-feat.csv.gz", [[f"{v:.6f}" for v in r] for r in feats])
    _write(raw / "node-label.csv.gz", labels.tolist())
    _write(raw / "node_year.csv.gz", rng.integers(2000, 2020, num_nodes))
    _write(raw / "num-node-list.csv.gz", [num_nodes])
    _write(raw / "num-edge-list.csv.gz", [len(edges)])
    perm = rng.permutation(num_nodes)
    n_train, n_val = num_nodes // 2, num_nodes // 4
    split = folder / "split" / "time"
    _write(split / "train.csv.gz", sorted(perm[:n_train]))
    _write(split / "valid.csv.gz", sorted(perm[n_train:n_train + n_val]))
    _write(split / "test.csv.gz", sorted(perm[n_train + n_val:]))
    (folder / "RELEASE_v1.txt").write_text("tiny test copy\n")
    return Path(root)
