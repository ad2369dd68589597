"""LightningDataModule for one cross-validation fold of a TU dataset."""
from __future__ import annotations

import copy
from typing import Callable, List, Optional, Union

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch_geometric.data import Data, Dataset
from torch_geometric.loader import DataLoader

from .._checks import check_choice, check_int
from ..data import errica_split, fold_split, load_tu_dataset
from .samplers import evaluation_sampler


class _Standardize:
    """A PyG transform: ``x <- (x - mean) / std`` after ``inner`` (features
    that do not vary on the training graphs are only centred)."""

    def __init__(self, mean: Tensor, std: Tensor,
                 inner: Optional[Callable[[Data], Data]] = None) -> None:
        self.mean = mean
        self.std = torch.where(std > 0, std, torch.ones_like(std))
        self.inner = inner

    def __call__(self, data: Data) -> Data:
        if self.inner is not None:
            data = self.inner(data)
        data.x = (data.x - self.mean) / self.std
        return data


#: How the graphs are split into folds (see :class:`GraphDataModule`).
SPLITS = ("stratified", "errica")


class GraphDataModule(pl.LightningDataModule):
    """The train / validation / test graphs of fold ``fold`` of a stratified
    ``folds``-fold cross-validation (:func:`pyg_rbp.data.fold_split`), or of
    the fixed folds of Errica et al. (``splits='errica'``,
    :func:`pyg_rbp.data.errica_split`), as PyG mini-batches.

    The validation graphs come from the training side of the fold; the
    validation loader also yields the test graphs (second loader), so that
    every epoch's test accuracy is on record for the protocols that need it,
    while model selection looks at validation only. Under DDP, Lightning's
    distributed sampler splits every loader between the ranks.

    Args:
        dataset (str or Dataset): A TU dataset name (see
            :data:`pyg_rbp.data.TU_DATASETS`), loaded from ``data_root``,
            or a PyG :class:`~torch_geometric.data.Dataset` of graphs the
            user already has (as PyG's ``LightningDataset`` takes it), each
            with ``x``, ``edge_index``, a graph label ``y`` and optionally
            ``edge_type``.
        data_root (str, optional): The data root (``TUDataset/<NAME>/raw``
            below it; see :mod:`pyg_rbp.data.root`).
        fold (int, optional): Which fold is the test part. (default: ``0``)
        folds (int, optional): Number of folds. (default: ``10``)
        seed (int, optional): Seed of the folds and the validation part.
        batch_size (int, optional): Graphs per mini-batch. (default: ``32``)
        val_fraction (float, optional): Validation graphs as a fraction of
            all graphs. (default: ``0.1``)
        download (bool, optional): Let PyG download missing files.
        splits (str, optional): ``'stratified'`` (our folds, from ``seed``,
            ``folds`` and ``val_fraction``) or ``'errica'`` (the 10 fixed
            folds of "A Fair Comparison of Graph Neural Networks for Graph
            Classification", with their inner train / validation holdout;
            NCI1, PROTEINS and ENZYMES, read from
            ``<data_root>/TUDataset/splits/``). (default: ``'stratified'``)
        node_attributes (bool, optional): Append the continuous node
            attributes to the one-hot labels (a TU dataset by name).
            (default: ``False``)
        standardize (bool, optional): Scale each node feature to zero mean
            and unit variance, with the mean and standard deviation over
            the nodes of the fold's training graphs only (ENZYMES'
            attributes range up to 762). (default: ``False``)
    """

    def __init__(self, dataset: Union[str, Dataset] = "MUTAG",
                 data_root: Optional[str] = None,
                 fold: int = 0, folds: int = 10, seed: int = 0,
                 batch_size: int = 32, val_fraction: float = 0.1,
                 download: bool = True, splits: str = "stratified",
                 node_attributes: bool = False,
                 standardize: bool = False) -> None:
        super().__init__()
        self.splits = check_choice("splits", splits, SPLITS)
        given = dataset if isinstance(dataset, Dataset) else None
        if given is not None:
            if len(given) < folds:
                raise ValueError(f"GraphDataModule: {folds} folds need at "
                                 f"least {folds} graphs (got {len(given)})")
            dataset = type(given).__name__
        self.dataset_name = dataset
        self.data_root = data_root
        self.fold = check_int("fold", fold, 0)
        self.folds = check_int("folds", folds, 2)
        if fold >= folds:
            raise ValueError(f"'fold' must be in [0, {folds}) (got {fold})")
        self.seed = seed
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.val_fraction = val_fraction
        self.download = download
        self.node_attributes = node_attributes
        self.standardize = standardize
        if splits == "errica" and folds != 10:
            raise ValueError(f"the Errica folds are 10 (got folds={folds})")
        self.dataset: Optional[Dataset] = given
        self.split: Optional[List[Tensor]] = None

    def _load(self) -> Dataset:
        if self.dataset is None:
            self.dataset = load_tu_dataset(
                self.dataset_name, self.data_root, download=self.download,
                node_attributes=self.node_attributes)
        return self.dataset

    def prepare_data(self) -> None:
        # One process only: processes (and downloads) the files once.
        if self.dataset is not None:
            return
        load_tu_dataset(self.dataset_name, self.data_root,
                        download=self.download,
                        node_attributes=self.node_attributes)

    def setup(self, stage: Optional[str] = None) -> None:
        dataset = self._load()
        if self.split is None and self.splits == "errica":
            self.split = list(errica_split(self.dataset_name, self.fold,
                                           len(dataset), self.data_root))
        elif self.split is None:
            self.split = list(fold_split(dataset.y, self.fold, self.folds,
                                         self.seed, self.val_fraction))
        if self.standardize and not isinstance(dataset.transform,
                                               _Standardize):
            x = torch.cat([dataset[int(i)].x for i in self.split[0]])
            # a copy: the caller's dataset keeps its own transform
            self.dataset = copy.copy(dataset)
            self.dataset.transform = _Standardize(
                x.mean(0), x.std(0), dataset.transform)


    @property
    def num_features(self) -> int:
        return int(self._load().num_features)

    @property
    def num_classes(self) -> int:
        return int(self._load().num_classes)

    @property
    def num_edge_types(self) -> int:
        """The dataset's ``num_edge_types``, else one more than the largest
        ``edge_type`` of its graphs (1 without edge types)."""
        dataset = self._load()
        known = getattr(dataset, "num_edge_types", None)
        if known is not None:
            return int(known)
        types = [int(g.edge_type.max()) for g in dataset
                 if getattr(g, "edge_type", None) is not None
                 and g.edge_type.numel() > 0]
        return max(types) + 1 if types else 1

    def _loader(self, part: int, shuffle: bool) -> DataLoader:
        if self.split is None:
            self.setup()
        subset = self._load()[self.split[part]]
        if part > 0:  # every validation / test graph once, on one rank
            return DataLoader(subset, batch_size=self.batch_size,
                              sampler=evaluation_sampler(
                                  subset, getattr(self, "trainer", None)))
        return DataLoader(subset, batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(0, shuffle=True)

    def val_dataloader(self) -> List[DataLoader]:
        return [self._loader(1, shuffle=False), self._loader(2, shuffle=False)]

    def test_dataloader(self) -> DataLoader:
        return self._loader(2, shuffle=False)
