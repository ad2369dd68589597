"""The fixed folds of Errica et al. (ICLR 2020): read as published, checked,
and refused clearly where they do not exist or do not fit."""
from __future__ import annotations

import json

import pytest
import torch

from pyg_rbp.data import (ERRICA_DATASETS, DatasetNotFoundError,
                          errica_split, load_tu_dataset)
from tests.conftest import shared_data_root

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow

needs_splits = pytest.mark.skipif(
    shared_data_root() is None or
    not (shared_data_root() / "TUDataset" / "splits").is_dir(),
    reason="../shared/data/TUDataset/splits not found")


@needs_splits
@pytest.mark.parametrize("name", ERRICA_DATASETS)
def test_folds_partition_the_dataset(name: str, cache_dir) -> None:
    root = shared_data_root()
    ds = load_tu_dataset(name, root, download=False)
    tests = []
    for fold in range(10):
        train, val, test = errica_split(name, fold, len(ds), root)
        whole = torch.cat([train, val, test])
        assert whole.sort().values.tolist() == list(range(len(ds)))
        # the published holdout: about 10 % of the training side
        assert 0.05 < val.numel() / (train.numel() + val.numel()) < 0.15
        tests.append(test)
        # each test fold keeps the class ratio (the files are in TU order)
        share = torch.bincount(ds.y[test], minlength=ds.num_classes) / \
            test.numel()
        whole_share = torch.bincount(ds.y, minlength=ds.num_classes) / \
            len(ds)
        assert (share - whole_share).abs().max() < 0.03
    everything = torch.cat(tests).sort().values
    assert everything.tolist() == list(range(len(ds)))


@needs_splits
def test_enzymes_node_attributes(cache_dir) -> None:
    root = shared_data_root()
    plain = load_tu_dataset("ENZYMES", root, download=False)
    rich = load_tu_dataset("ENZYMES", root, download=False,
                           node_attributes=True)
    assert plain.num_features == 3 and rich.num_features == 21
    # the one-hot labels are the last columns either way
    torch.testing.assert_close(rich[0].x[:, 18:], plain[0].x)


def test_refusals(tmp_path) -> None:
    with pytest.raises(ValueError, match="exist for"):
        errica_split("MUTAG", 0, 188, tmp_path)
    with pytest.raises(DatasetNotFoundError,
                       match=r"NCI1_errica.json.*--data-root"):
        errica_split("NCI1", 0, 10, tmp_path)
    splits = tmp_path / "TUDataset" / "splits"
    splits.mkdir(parents=True)
    fold = {"test": [0, 1], "model_selection": [{"train": [2, 3, 4],
                                                  "validation": [5]}]}
    (splits / "NCI1_errica.json").write_text(json.dumps([fold]))
    train, val, test = errica_split("NCI1", 0, 6, tmp_path)
    assert (train.tolist(), val.tolist(), test.tolist()) == \
        ([2, 3, 4], [5], [0, 1])
    with pytest.raises(ValueError, match=r"'fold' must be in \[0, 1\)"):
        errica_split("NCI1", 1, 6, tmp_path)
    with pytest.raises(ValueError, match="disjoint"):
        errica_split("NCI1", 0, 7, tmp_path)  # graph 6 in no part
    fold["test"] = [0, 2]  # graph 2 twice, graph 1 nowhere
    (splits / "NCI1_errica.json").write_text(json.dumps([fold]))
    with pytest.raises(ValueError, match="disjoint"):
        errica_split("NCI1", 0, 6, tmp_path)
    (splits / "NCI1_errica.json").write_text(json.dumps([{"test": [0]}]))
    with pytest.raises(ValueError, match="model_selection"):
        errica_split("NCI1", 0, 6, tmp_path)


def test_config_refuses_errica_where_it_does_not_exist() -> None:
    from pyg_rbp.lightning import GraphTrainConfig
    with pytest.raises(ValueError, match="--splits errica exists for"):
        GraphTrainConfig(dataset="MUTAG", splits="errica").check()
    with pytest.raises(ValueError, match="Errica folds are 10"):
        GraphTrainConfig(dataset="NCI1", splits="errica", folds=5).check()
    with pytest.raises(ValueError, match="'splits' must be one of"):
        GraphTrainConfig(dataset="NCI1", splits="random").check()
    GraphTrainConfig(dataset="NCI1", splits="errica").check()


@needs_splits
def test_standardize_uses_the_training_graphs_only(cache_dir) -> None:
    from pyg_rbp.lightning import GraphDataModule
    root = shared_data_root()
    given = load_tu_dataset("ENZYMES", root, download=False,
                            node_attributes=True)
    before = given.transform
    dm = GraphDataModule(given, fold=2, splits="stratified",
                         standardize=True)
    dm.setup()
    train = torch.cat([dm.dataset[int(i)].x for i in dm.split[0]])
    torch.testing.assert_close(train.mean(0), torch.zeros(21), atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(train.std(0), torch.ones(21), atol=1e-4,
                               rtol=0)
    test = torch.cat([dm.dataset[int(i)].x for i in dm.split[2]])
    assert test.abs().max() > 0  # scaled with the training statistics
    raw_test = torch.cat([given[int(i)].x for i in dm.split[2]])
    torch.testing.assert_close(
        test, (raw_test - dm.dataset.transform.mean)
        / dm.dataset.transform.std)
    assert given.transform is before  # the caller's dataset is untouched
