"""Lightning training for node and graph classification and bAbI (optional
dependency).

Needs ``pytorch-lightning`` and ``torchmetrics``:
``pip install 'pyg-rbp[lightning]'``.
"""
try:
    import pytorch_lightning  # noqa: F401
    import torchmetrics  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on install
    raise ModuleNotFoundError(
        f"pyg_rbp.lightning needs pytorch-lightning and torchmetrics "
        f"('{exc.name}' is missing); install them with "
        f"pip install 'pyg-rbp[lightning]'") from exc

from .babi_module import BabiDataModule, BabiModule
from .babi_run import BabiTrainConfig, train_babi
from .datamodules import (LOADERS, GraphDataModule, NodeDataModule,
                          UnpaddedDistributedSampler)
from .graph_module import GraphClassificationModule
from .graph_run import (GraphTrainConfig, select_epoch,
                        train_graph_classifier)
from .config import RunConfig
from .module import NodeClassificationModule
from .run import TrainConfig, train_node_classifier
from .runner import EpochHistory, make_trainer

#: The earlier name of :class:`EpochHistory` (node classification's).
History = EpochHistory

__all__ = ["RunConfig", "make_trainer", "EpochHistory",
           "NodeClassificationModule", "NodeDataModule", "TrainConfig",
           "History", "train_node_classifier", "LOADERS",
           "GraphClassificationModule", "GraphDataModule", "GraphTrainConfig",
           "train_graph_classifier", "select_epoch", "BabiDataModule",
           "BabiModule", "BabiTrainConfig", "train_babi",
           "UnpaddedDistributedSampler"]
