"""TU graph-classification datasets (MUTAG, PROTEINS, NCI1, ENZYMES) and their
cross-validation folds.

Files live in ``<root>/TUDataset/<NAME>/raw/NAME_*.txt``, the layout of PyG's
:class:`~torch_geometric.datasets.TUDataset`; the data-root rules are those of
:mod:`pyg_rbp.data.root` (a read-only root is copied to the cache first).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.datasets import TUDataset

from .._checks import check_int
from .root import (DatasetNotFoundError, PathLike, missing_files,
                   open_dataset, resolve_data_root, writable_dataset_dir)

#: The graph-classification sets the examples know.
TU_DATASETS = ("MUTAG", "PROTEINS", "NCI1", "ENZYMES")

#: The sets with the fixed 10 folds of Errica et al., "A Fair Comparison of
#: Graph Neural Networks for Graph Classification" (ICLR 2020).
ERRICA_DATASETS = ("NCI1", "PROTEINS", "ENZYMES")
#: Where those folds come from (index data only).
ERRICA_SOURCE = ("github.com/diningphil/gnn-comparison, "
                 "data_splits/CHEMICAL/<NAME>_splits.json (PROTEINS: "
                 "PROTEINS_full_splits.json)")

_RAW = ("A", "graph_indicator", "graph_labels")


class _EdgeTypes:
    """A PyG transform: the one-hot ``edge_attr`` becomes ``edge_type``."""

    def __call__(self, data: Data) -> Data:
        if data.edge_attr is not None and data.edge_attr.numel() > 0:
            data.edge_type = data.edge_attr.argmax(-1)
        else:
            data.edge_type = torch.zeros(data.edge_index.size(1),
                                         dtype=torch.long)
        return data


def tu_raw_files(name: str) -> List[str]:
    """The raw files PyG's ``TUDataset`` cannot do without."""
    return [f"{name}_{suffix}.txt" for suffix in _RAW]


def load_tu_dataset(name: str, data_root: Optional[PathLike] = None,
                    download: bool = True,
                    node_attributes: bool = False) -> TUDataset:
    """Load a TU dataset with integer edge types.

    Node features are the one-hot node labels (PyG's default, the usual
    protocol). Each graph gets ``edge_type`` (``[E]``, long): the bond type for
    MUTAG (from its one-hot ``edge_attr``: 0 aromatic, 1 single, 2 double,
    3 triple), all zeros where the dataset has no edge labels. The dataset's
    ``num_edge_types`` attribute says how many there are.

    Args:
        name: One of :data:`TU_DATASETS` (other TU names work where PyG can
            download them).
        data_root: The data root (see :mod:`pyg_rbp.data.root`); files are
            read from ``<root>/TUDataset/<name>/raw/``.
        download: Whether to let PyG download missing files.
        node_attributes: Append the dataset's continuous node attributes
            (``NAME_node_attributes.txt``: 18 for ENZYMES, 1 for PROTEINS)
            to the one-hot labels, as PyG's ``use_node_attr=True``.

    Raises:
        pyg_rbp.data.DatasetNotFoundError: Files are missing and could not be
            downloaded; the message names them and the option to set.
    """
    if not isinstance(node_attributes, bool):
        raise TypeError(f"'node_attributes' must be a bool (got "
                        f"{type(node_attributes).__name__})")
    if not isinstance(name, str) or not name:
        raise TypeError(f"'name' must be a TU dataset name such as 'MUTAG' "
                        f"(got {name!r})")
    root = resolve_data_root(data_root)
    folder = writable_dataset_dir(root, f"TUDataset/{name}")
    missing = missing_files(folder / "raw", tu_raw_files(name))
    dataset = open_dataset(
        name, folder / "raw", missing, download,
        lambda: TUDataset(str(folder.parent), name, transform=_EdgeTypes(),
                          use_node_attr=node_attributes))
    num_types = dataset.num_edge_features or 1
    dataset.num_edge_types = int(num_types)
    return dataset


def stratified_folds(labels: Tensor, folds: int, seed: int) -> List[Tensor]:
    """Split graph indices into ``folds`` disjoint parts, each with the class
    proportions of the whole (as scikit-learn's ``StratifiedKFold`` with
    shuffling). Seeded with its own generator.

    Returns:
        A list of ``folds`` index tensors that together hold every index once.
    """
    check_int("folds", folds, 2)
    labels = labels.view(-1)
    counts = torch.bincount(labels)
    if int(counts[counts > 0].min()) < folds:
        raise ValueError(f"'folds' must be at most the size of the smallest "
                         f"class ({int(counts[counts > 0].min())}) "
                         f"(got {folds})")
    gen = torch.Generator().manual_seed(seed)
    parts: List[List[int]] = [[] for _ in range(folds)]
    offset = 0
    for cls in range(counts.numel()):
        idx = (labels == cls).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        # deal the class out round-robin, starting where the last one ended,
        # so fold sizes differ by at most one
        for i, j in enumerate(idx.tolist()):
            parts[(offset + i) % folds].append(j)
        offset += idx.numel()
    return [torch.tensor(sorted(p), dtype=torch.long) for p in parts]


def fold_split(labels: Tensor, fold: int, folds: int = 10, seed: int = 0,
               val_fraction: float = 0.1) -> Tuple[Tensor, Tensor, Tensor]:
    """``(train, val, test)`` graph indices of one cross-validation fold.

    The test part is fold ``fold`` of :func:`stratified_folds`; the
    validation part is a stratified ``val_fraction`` of *all* graphs taken
    from the other folds' graphs (so from the training side only), and the
    rest is for training. Model selection uses validation only.
    """
    check_int("fold", fold, 0)
    if fold >= folds:
        raise ValueError(f"'fold' must be in [0, {folds}) (got {fold})")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"'val_fraction' must be in (0, 1) "
                         f"(got {val_fraction})")
    labels = labels.view(-1)
    parts = stratified_folds(labels, folds, seed)
    test = parts[fold]
    rest = torch.cat([p for i, p in enumerate(parts) if i != fold])
    gen = torch.Generator().manual_seed(seed * 1000 + fold)
    val_parts, train_parts = [], []
    for cls in labels[rest].unique():
        idx = rest[labels[rest] == cls]
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_val = int(round(val_fraction * int((labels == cls).sum())))
        n_val = min(max(n_val, 1), idx.numel() - 1)
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    return (torch.cat(train_parts).sort().values,
            torch.cat(val_parts).sort().values, test)


def errica_split_file(name: str, data_root: Optional[PathLike] = None
                      ) -> Path:
    """``<root>/TUDataset/splits/<NAME>_errica.json``: the folds of
    :func:`errica_split` (the read-only data root is read in place)."""
    return resolve_data_root(data_root) / "TUDataset" / "splits" / \
        f"{name}_errica.json"


def errica_split(name: str, fold: int, num_graphs: int,
                 data_root: Optional[PathLike] = None
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    """``(train, val, test)`` graph indices of outer fold ``fold`` of Errica
    et al. (ICLR 2020).

    The test part is the fold's ``test`` list; training and validation are
    its ``model_selection`` holdout (their inner train / validation split,
    on which they chose hyper-parameters and we choose the epoch). Indices
    are into the TU dataset in file order.

    Args:
        name: One of :data:`ERRICA_DATASETS`.
        fold: The outer fold, ``0 <= fold < 10``.
        num_graphs: The dataset's size, to check the indices against.
        data_root: The data root (see :mod:`pyg_rbp.data.root`).

    Raises:
        ValueError: ``name`` has no such folds, ``fold`` is out of range, or
            the file's indices do not split ``num_graphs`` graphs.
        pyg_rbp.data.DatasetNotFoundError: The file is missing; the message
            names it, its source and the option to point at it.
    """
    if name not in ERRICA_DATASETS:
        raise ValueError(f"the folds of Errica et al. exist for "
                         f"{ERRICA_DATASETS} (got {name!r}); use the "
                         f"stratified folds for other datasets")
    path = errica_split_file(name, data_root)
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{path} not found: the fixed folds of Errica et al. for {name} "
            f"(from {ERRICA_SOURCE}, saved as {path.name}). Point --data-root "
            f"(or $PYG_RBP_DATA_ROOT) at the folder holding "
            f"TUDataset/splits/, or use the stratified folds.")
    folds = json.loads(path.read_text())
    if not isinstance(folds, list) or not folds:
        raise ValueError(f"{path}: expected a list of folds (got "
                         f"{type(folds).__name__})")
    check_int("fold", fold, 0)
    if fold >= len(folds):
        raise ValueError(f"'fold' must be in [0, {len(folds)}) for {name}'s "
                         f"Errica folds (got {fold})")
    part = folds[fold]
    try:
        holdout = part["model_selection"][0]
        parts = (holdout["train"], holdout["validation"], part["test"])
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{path}: fold {fold} lacks 'test' or "
                         f"'model_selection'[0]['train' / 'validation'] "
                         f"({exc!r})") from None
    train, val, test = (torch.tensor(sorted(p), dtype=torch.long)
                        for p in parts)
    everything = torch.cat([train, val, test])
    if everything.numel() != num_graphs or \
            everything.unique().numel() != num_graphs or \
            int(everything.min()) < 0 or int(everything.max()) >= num_graphs:
        raise ValueError(f"{path}: fold {fold} does not split the "
                         f"{num_graphs} graphs of {name} into disjoint "
                         f"parts (train {train.numel()}, validation "
                         f"{val.numel()}, test {test.numel()})")
    return train, val, test
