"""Datasets for the examples and benchmarks: Planetoid and OGB node graphs,
TU graph-classification sets,
GGNN's symbolic bAbI tasks.

Knows nothing about Lightning; :mod:`pyg_rbp.lightning` builds on it.
"""
from __future__ import annotations

from typing import Optional

from torch_geometric.data import Data

from .._checks import check_choice
from .babi import (BABI_TASKS, BabiTask, babi_splits, load_babi,
                   parse_babi)
from .chains import chains
from .ogb import OGB_DATASETS, load_ogbn
from .planetoid import PLANETOID, SPLITS, load_planetoid, paper_split
from .root import (ENV_VAR, DatasetNotFoundError, cache_root,
                   resolve_data_root)
from .tu import (ERRICA_DATASETS, TU_DATASETS, errica_split, fold_split,
                 load_tu_dataset, stratified_folds)

DATASETS = PLANETOID + OGB_DATASETS


def load_node_dataset(name: str, data_root: Optional[str] = None,
                      split: str = "public", seed: int = 0,
                      download: bool = True,
                      normalize_features: bool = True) -> Data:
    """Load any dataset in :data:`DATASETS` as one ``Data`` with masks.

    OGB datasets always use their official split (``split`` must be
    ``'public'``) and their features as given; ``normalize_features``
    row-normalises a Planetoid graph's features (see
    :func:`load_planetoid`).
    """
    check_choice("dataset", name, DATASETS)
    check_choice("split", split, SPLITS)
    if name in OGB_DATASETS:
        if split != "public":
            raise ValueError(f"'{name}' has one official split; use "
                             f"split='public' (got {split!r})")
        return load_ogbn(name, data_root, download=download)
    return load_planetoid(name, data_root, split=split, seed=seed,
                          download=download,
                          normalize_features=normalize_features)


__all__ = ["DATASETS", "PLANETOID", "OGB_DATASETS", "SPLITS", "ENV_VAR",
           "DatasetNotFoundError", "load_node_dataset", "load_planetoid",
           "load_ogbn", "paper_split", "resolve_data_root", "cache_root",
           "chains", "TU_DATASETS", "load_tu_dataset", "stratified_folds",
           "ERRICA_DATASETS", "errica_split",
           "fold_split", "BABI_TASKS", "BabiTask", "load_babi", "parse_babi",
           "babi_splits"]
