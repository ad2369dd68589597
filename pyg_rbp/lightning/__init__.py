"""Lightning training for node classification (optional dependency).

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

from .datamodule import LOADERS, NodeDataModule
from .module import NodeClassificationModule
from .run import History, TrainConfig, train_node_classifier

__all__ = ["NodeClassificationModule", "NodeDataModule", "TrainConfig",
           "History", "train_node_classifier", "LOADERS"]
