"""LightningDataModule for one node-classification graph (Planetoid, OGB)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Data, Dataset

from .._checks import check_choice, check_int
from ..data import DATASETS, SPLITS, load_node_dataset
from ..data.sampling import neighbor_loader

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

    def _whole_graph(self) -> DataLoader:
        return DataLoader([self.data], batch_size=1, collate_fn=_only)

    def train_dataloader(self) -> DataLoader:
        if self.loader == "full":
            return self._whole_graph()
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        return neighbor_loader(self.data, self.train_nodes(rank, world),
                               self.num_neighbors, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._whole_graph()

    def test_dataloader(self) -> DataLoader:
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
