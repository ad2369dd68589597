"""OGB node-property graphs (ogbn-arxiv, ...) through OGB's own loader."""
from __future__ import annotations

from typing import Optional

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from .root import (PathLike, missing_files, open_dataset, resolve_data_root,
                   writable_dataset_dir)

OGB_DATASETS = ("ogbn-arxiv", "ogbn-products")

_RAW = ("edge.csv.gz", "node-feat.csv.gz", "node-label.csv.gz",
        "num-node-list.csv.gz", "num-edge-list.csv.gz")


def _allow_pyg_classes() -> None:
    """torch >= 2.6 loads with ``weights_only=True``; OGB's ``torch.load`` of
    its processed file needs PyG's data classes allowed."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage
    torch.serialization.add_safe_globals(
        [DataEdgeAttr, DataTensorAttr, GlobalStorage])


def load_ogbn(name: str, data_root: Optional[PathLike] = None,
              download: bool = True) -> Data:
    """Load an OGB node-classification graph as one undirected ``Data``.

    Files live in ``<root>/ogb/<name with _>/`` in OGB's layout (``raw/``,
    ``split/``, ``RELEASE_v1.txt``). The official split becomes
    ``train_mask``/``val_mask``/``test_mask``; ``data.evaluator`` names the
    OGB :class:`~ogb.nodeproppred.Evaluator` to score with.

    Raises:
        ModuleNotFoundError: ``ogb`` is not installed (``pip install
            pyg-rbp[ogb]``).
        pyg_rbp.data.DatasetNotFoundError: Files are missing and could not be downloaded.
    """
    try:
        from ogb.nodeproppred import PygNodePropPredDataset
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"'{name}' needs the 'ogb' package; install it with "
            f"pip install 'pyg-rbp[ogb]' (or pip install ogb)") from exc
    _allow_pyg_classes()
    root = resolve_data_root(data_root)
    dir_name = name.replace("-", "_")
    folder = writable_dataset_dir(root, f"ogb/{dir_name}")
    missing = missing_files(folder / "raw", _RAW)
    if folder.exists() and not (folder / "RELEASE_v1.txt").exists():
        missing.append("../RELEASE_v1.txt")  # else OGB stops to ask
    dataset = open_dataset(
        name, folder / "raw", missing, download,
        lambda: PygNodePropPredDataset(name, root=str(folder.parent)))
    data = dataset[0]
    split = dataset.get_idx_split()
    n = data.num_nodes
    for key, mask_name in (("train", "train_mask"), ("valid", "val_mask"),
                           ("test", "test_mask")):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[split[key]] = True
        data[mask_name] = mask
    out = Data(x=data.x.float(), edge_index=to_undirected(data.edge_index,
                                                          num_nodes=n),
               y=data.y.view(-1).long(), train_mask=data.train_mask,
               val_mask=data.val_mask, test_mask=data.test_mask)
    out.num_classes = int(dataset.num_classes)
    out.name = name
    out.evaluator = name
    return out
