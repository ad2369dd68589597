"""The LightningDataModules: one node-classification graph (Planetoid, OGB),
one cross-validation fold of a TU dataset; and the evaluation sampler they
(and bAbI's) share under DDP.

Evaluation under DDP that sees every graph exactly once.

Lightning gives a validation or test loader a :class:`DistributedSampler`,
which pads the dataset to a multiple of the world size by repeating its
first items: with 19 validation graphs on 2 ranks, one graph counts twice
and the accuracy that picks the epoch is not the accuracy of the split.
:class:`UnpaddedDistributedSampler` gives rank :math:`r` of :math:`R` the
items :math:`r, r + R, r + 2R, \\dots` once each (ranks may then hold one
item more or less); the modules accumulate sums and counts across ranks
(:class:`torchmetrics.MeanMetric`), so the metric is exact.
"""
from __future__ import annotations

import copy
from typing import (Any, Callable, Iterator, List, Optional, Sequence, Sized,
                    Union)

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader as TorchLoader
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.data import Data, Dataset
from torch_geometric.loader import DataLoader

from .._checks import check_choice, check_int
from ..data import (DATASETS, SPLITS, errica_split, fold_split,
                    load_node_dataset, load_tu_dataset)
from ..data.sampling import neighbor_loader


# -- evaluation under DDP -----------------------------------------------------

class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``rank`` of ``num_replicas`` gets items ``rank::num_replicas``,
    in order, each exactly once.

    A :class:`DistributedSampler` subclass, so Lightning keeps it instead of
    injecting its own padding one.

    Args:
        dataset (Sized): What the loader draws from.
        num_replicas (int): The world size.
        rank (int): This process's global rank.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank,
                         shuffle=False, drop_last=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def evaluation_sampler(dataset: Sized, trainer: Optional[Any]
                       ) -> Optional[UnpaddedDistributedSampler]:
    """The sampler of a validation or test loader: unpadded with more than
    one rank (``trainer.world_size > 1``), else ``None`` (the loader's
    own, in order)."""
    if trainer is None or trainer.world_size <= 1:
        return None
    return UnpaddedDistributedSampler(dataset, trainer.world_size,
                                      trainer.global_rank)


# -- node classification ------------------------------------------------------

LOADERS = ("full", "neighbor")


def _only(batch: List[Data]) -> Data:
    return batch[0]


class NodeDataModule(pl.LightningDataModule):
    """One graph, its masks, and the loaders Lightning asks for.

    Training is full-batch (``loader='full'``: every step sees the whole
    graph, the loss uses ``train_mask``) or neighbour-sampled
    (``loader='neighbor'``: subgraphs sampled around batches of training
    nodes by :func:`pyg_rbp.data.sampling.neighbor_loader`, which needs
    neither pyg-lib nor torch-sparse).
    Under DDP with ``'neighbor'`` each rank takes an equal, disjoint share of
    the training nodes (so the Trainer needs
    ``use_distributed_sampler=False``); ``'full'`` with several devices is
    refused, since every rank would repeat the same whole-graph step.
    Validation and test always run on the whole graph.

    Args:
        dataset (str, Data or Dataset): One of :data:`pyg_rbp.data.DATASETS`
            (loaded from ``data_root``, with ``split``), or a graph the user
            already has, as PyG's ``LightningNodeData`` takes it: a
            :class:`~torch_geometric.data.Data` with ``x``, ``edge_index``,
            ``y`` and boolean ``train_mask`` / ``val_mask`` / ``test_mask``,
            or a one-graph :class:`~torch_geometric.data.Dataset` (its
            ``num_classes`` is used); ``split`` is then ignored.
        data_root (str, optional): Data root (see :mod:`pyg_rbp.data.root`).
        split (str, optional): ``'public'`` or ``'paper'`` (1%/49%/50%).
        seed (int, optional): Seed of the ``'paper'`` split and of the
            partition of training nodes between ranks.
        loader (str, optional): ``'full'`` or ``'neighbor'``.
        num_neighbors (sequence of int, optional): Neighbours sampled per
            hop for ``'neighbor'``. (default: :obj:`(10, 10)`)
        batch_size (int, optional): Seed nodes per batch for ``'neighbor'``.
        download (bool, optional): Let PyG/OGB download missing files.
        normalize_features (bool, optional): Row-normalise a Planetoid
            graph's features. (default: :obj:`True`)
    """

    def __init__(self, dataset: Union[str, Data, Dataset] = "Cora",
                 data_root: Optional[str] = None,
                 split: str = "public", seed: int = 0, loader: str = "full",
                 num_neighbors: Sequence[int] = (10, 10),
                 batch_size: int = 512, download: bool = True,
                 normalize_features: bool = True) -> None:
        super().__init__()
        self._given: Optional[Data] = None
        self._given_classes: Optional[int] = None
        if isinstance(dataset, (Data, Dataset)):
            self._given, self._given_classes = _check_node_graph(dataset)
            dataset = "custom"
        else:
            check_choice("dataset", dataset, DATASETS)
        self.dataset = dataset
        self.split = check_choice("split", split, SPLITS)
        self.loader = check_choice("loader", loader, LOADERS)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.num_neighbors = [check_int("num_neighbors", n, -1)
                              for n in num_neighbors]
        self.data_root = data_root
        self.seed = seed
        self.download = download
        self.normalize_features = bool(normalize_features)
        self.data: Optional[Data] = None

    def _load(self) -> Data:
        if self._given is not None:
            return self._given
        return load_node_dataset(self.dataset, self.data_root, self.split,
                                 self.seed, download=self.download,
                                 normalize_features=self.normalize_features)

    def prepare_data(self) -> None:
        # Runs on one process only: processes (and downloads) the files once
        # before every rank reads them in setup().
        self._load()

    def setup(self, stage: Optional[str] = None) -> None:
        if self.data is None:
            self.data = self._load()
        trainer = self.trainer
        if trainer is not None and self.loader == "full":
            # Full batch: the whole graph goes to the device once, not at
            # every step (Lightning's transfer is then a no-op).
            self.data = self.data.to(trainer.strategy.root_device)
        world = trainer.world_size if trainer is not None else 1
        if world > 1 and self.loader == "full":
            raise ValueError(
                "loader='full' with several devices would repeat the same "
                "whole-graph step on every rank; use loader='neighbor' "
                "(--loader neighbor), which splits the training nodes "
                f"between the {world} ranks")
        if world > 1 and getattr(getattr(trainer, "_accelerator_connector",
                                         None), "use_distributed_sampler",
                                 False):
            raise ValueError(
                "NodeDataModule splits the training nodes between ranks "
                "itself; create the Trainer with "
                "use_distributed_sampler=False")

    @property
    def num_features(self) -> int:
        if self.data is None:
            self.data = self._load()
        return int(self.data.num_features)

    @property
    def num_classes(self) -> int:
        if self._given_classes is not None:
            return self._given_classes
        if self.data is None:
            self.data = self._load()
        return int(self.data.num_classes)

    def train_nodes(self, rank: int = 0, world: int = 1) -> torch.Tensor:
        """This rank's training nodes: an equal, disjoint share."""
        if self.data is None:
            raise RuntimeError("NodeDataModule: call setup() first")
        idx = self.data.train_mask.nonzero().view(-1)
        if world > 1:
            gen = torch.Generator().manual_seed(self.seed)
            idx = idx[torch.randperm(idx.numel(), generator=gen)]
            per_rank = idx.numel() // world
            idx = idx[rank * per_rank:(rank + 1) * per_rank]
        return idx

    def _whole_graph(self) -> TorchLoader:
        return TorchLoader([self.data], batch_size=1, collate_fn=_only)

    def train_dataloader(self) -> TorchLoader:
        if self.loader == "full":
            return self._whole_graph()
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        return neighbor_loader(self.data, self.train_nodes(rank, world),
                               self.num_neighbors, self.batch_size)

    def val_dataloader(self) -> TorchLoader:
        return self._whole_graph()

    def test_dataloader(self) -> TorchLoader:
        return self._whole_graph()


def _check_node_graph(dataset: Union[Data, Dataset]) -> "tuple[Data, int]":
    """The graph of a user's ``Data`` / one-graph ``Dataset``, checked, and
    its number of classes."""
    classes: Optional[int] = None
    if isinstance(dataset, Dataset):
        if len(dataset) != 1:
            raise ValueError(f"NodeDataModule takes a Dataset of one graph "
                             f"(got {len(dataset)} graphs); pass the graph "
                             f"as a Data")
        classes = int(dataset.num_classes)
        dataset = dataset[0]
    data = dataset
    missing = [k for k in ("x", "edge_index", "y", "train_mask", "val_mask",
                           "test_mask") if getattr(data, k, None) is None]
    if missing:
        raise ValueError(f"NodeDataModule: the graph needs x, edge_index, y "
                         f"and boolean train/val/test masks (missing: "
                         f"{', '.join(missing)})")
    n = data.num_nodes
    for k in ("train_mask", "val_mask", "test_mask"):
        mask = data[k]
        if mask.dtype != torch.bool or tuple(mask.shape) != (n, ):
            raise ValueError(f"NodeDataModule: '{k}' must be a bool tensor "
                             f"[{n}] (got {mask.dtype} "
                             f"{list(mask.shape)})")
    if data.y.dim() != 1 or data.y.numel() != n or \
            data.y.is_floating_point():
        raise ValueError(f"NodeDataModule: 'y' must be integer class labels "
                         f"[{n}] (got {data.y.dtype} {list(data.y.shape)})")
    if classes is None:
        classes = int(getattr(data, "num_classes", 0) or 0) or \
            int(data.y.max()) + 1
    return data, classes


# -- graph classification -----------------------------------------------------


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
FOLD_SPLITS = ("stratified", "errica")


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
        self.splits = check_choice("splits", splits, FOLD_SPLITS)
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
