"""Planetoid citation graphs (Cora, CiteSeer, PubMed) with both protocols."""
from __future__ import annotations

from typing import Optional

import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.datasets import Planetoid

from .._checks import check_choice
from .masks import random_masks
from .root import (PathLike, missing_files, open_dataset, resolve_data_root,
                   writable_dataset_dir)

PLANETOID = ("Cora", "CiteSeer", "PubMed")
SPLITS = ("public", "paper")

_RAW = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def planetoid_raw_files(name: str) -> list:
    """The eight raw files PyG's ``Planetoid`` reads for ``name``."""
    return [f"ind.{name.lower()}.{suffix}" for suffix in _RAW]


def paper_split(data: Data, seed: int, train: float = 0.01,
                val: float = 0.49) -> Data:
    """The RBP paper's protocol: random 1% train / 49% val / 50% test nodes.

    Seeded with its own generator, so it does not disturb the global RNG.
    """
    n = data.num_nodes
    gen = torch.Generator().manual_seed(seed)
    for name, mask in random_masks(n, train, val, gen).items():
        data[name] = mask
    return data


def load_planetoid(name: str, data_root: Optional[PathLike] = None,
                   split: str = "public", seed: int = 0,
                   download: bool = True,
                   normalize_features: bool = True) -> Data:
    """Load a Planetoid graph, by default with row-normalised features.

    Args:
        name: ``'Cora'``, ``'CiteSeer'`` or ``'PubMed'`` (any case, as
            PyG's ``Planetoid`` takes them).
        data_root: The data root (see :mod:`pyg_rbp.data.root`); the files
            are read from ``<root>/Planetoid/<name>/raw/``.
        split: ``'public'`` (Planetoid's 20 labels per class, 500 val,
            1000 test) or ``'paper'`` (random 1% / 49% / 50%, seeded).
        seed: Seed of the ``'paper'`` split.
        download: Whether to let PyG download missing files.
        normalize_features: Row-normalise the features (PyG's
            ``NormalizeFeatures``, as GCN's and APPNP's recipes have it);
            ``False`` keeps Planetoid's raw binary bag-of-words.

    Raises:
        pyg_rbp.data.DatasetNotFoundError: Files are missing and could not be downloaded;
            the message names them and the option to set.
    """
    canonical = {n.lower(): n for n in PLANETOID}
    if not isinstance(name, str) or name.lower() not in canonical:
        raise ValueError(f"'name' must be one of {PLANETOID} (any case; got "
                         f"{name!r}); the data root is the second argument")
    name = canonical[name.lower()]
    check_choice("split", split, SPLITS)
    root = resolve_data_root(data_root)
    folder = writable_dataset_dir(root, f"Planetoid/{name}")
    missing = missing_files(folder / "raw", planetoid_raw_files(name))
    dataset = open_dataset(
        name, folder / "raw", missing, download,
        lambda: Planetoid(str(folder.parent), name,
                          transform=T.NormalizeFeatures()
                          if normalize_features else None))
    data = dataset[0]
    data.num_classes = dataset.num_classes
    data.name = name
    if split == "paper":
        data = paper_split(data, seed)
    return data
