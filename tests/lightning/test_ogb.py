"""ogbn-arxiv through OGB's loader and Evaluator, on a tiny written copy."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("ogb")

from pyg_rbp.data import DatasetNotFoundError, load_node_dataset  # noqa: E402
from pyg_rbp.lightning import TrainConfig, train_node_classifier  # noqa: E402
from tests.lightning.ogb_tiny import write_tiny_ogbn_arxiv  # noqa: E402

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow


def test_tiny_ogbn_arxiv_loads_without_download(tmp_path, cache_dir) -> None:
    root = write_tiny_ogbn_arxiv(tmp_path / "data")
    data = load_node_dataset("ogbn-arxiv", str(root), download=False)
    assert data.num_nodes == 120 and data.num_features == 8
    assert data.num_classes == 40 and data.evaluator == "ogbn-arxiv"
    assert int(data.train_mask.sum()) == 60 and int(data.val_mask.sum()) == 30
    assert data.y.dim() == 1 and data.y.dtype == torch.long
    # made undirected: every edge has its reverse
    pairs = set(map(tuple, data.edge_index.t().tolist()))
    assert all((j, i) in pairs for i, j in pairs)
    # processed once, then read back through torch.load(weights_only=True)
    again = load_node_dataset("ogbn-arxiv", str(root), download=False)
    assert torch.equal(again.x, data.x)


def test_missing_ogb_files_offline(tmp_path, cache_dir) -> None:
    root = write_tiny_ogbn_arxiv(tmp_path / "data")
    (root / "ogb" / "ogbn_arxiv" / "raw" / "node-label.csv.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="node-label.csv.gz"):
        load_node_dataset("ogbn-arxiv", str(root), download=False)


def test_neighbour_sampled_training_with_evaluator(tmp_path, cache_dir) -> None:
    root = write_tiny_ogbn_arxiv(tmp_path / "data")
    result = train_node_classifier(TrainConfig(
        dataset="ogbn-arxiv", data_root=str(root), loader="neighbor",
        batch_size=32, max_epochs=15, num_layers=10, hidden=16,
        input_dropout=0.2, dropout=0.2, accelerator="cpu",
        output_dir=str(tmp_path / "out"), progress_bar=False,
        download=False))
    assert result["epochs"] == 15
    assert result["test_acc"] > 0.6  # 3 planted classes: chance is ~1/3
