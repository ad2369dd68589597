"""TU datasets: data roots, edge types, folds and the offline error."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pyg_rbp.data import (DatasetNotFoundError, fold_split, load_tu_dataset,
                          stratified_folds)
from tests.conftest import shared_data_root

needs_tu = pytest.mark.skipif(
    shared_data_root() is None or
    not (shared_data_root() / "TUDataset" / "MUTAG" / "raw").is_dir(),
    reason="../shared/data/TUDataset not found")


def _read_only_copy(tmp_path: Path, name: str = "MUTAG") -> Path:
    root = tmp_path / "ro"
    shutil.copytree(shared_data_root() / "TUDataset" / name / "raw",
                    root / "TUDataset" / name / "raw")
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return root


@needs_tu
def test_mutag_from_a_read_only_root_with_bond_types(tmp_path,
                                                     cache_dir) -> None:
    root = _read_only_copy(tmp_path)
    ds = load_tu_dataset("MUTAG", str(root), download=False)
    assert len(ds) == 188 and ds.num_classes == 2 and ds.num_features == 7
    assert ds.num_edge_types == 4
    g = ds[0]
    assert g.edge_type.dtype == torch.long
    assert g.edge_type.shape == (g.edge_index.size(1), )
    torch.testing.assert_close(g.edge_type, g.edge_attr.argmax(-1))
    # bond-type counts over the whole set (SOURCE.md): aromatic, single,
    # double, triple
    counts = torch.bincount(torch.cat([d.edge_type for d in ds]), minlength=4)
    assert counts.tolist() == [4708, 2008, 724, 2]
    # the read-only root is untouched; PyG processed a copy in the cache
    assert not (root / "TUDataset" / "MUTAG" / "processed").exists()
    assert (cache_dir / "TUDataset" / "MUTAG" / "processed").is_dir()


@needs_tu
def test_untyped_dataset_gets_zero_edge_types(tmp_path, cache_dir) -> None:
    root = _read_only_copy(tmp_path, "ENZYMES")
    ds = load_tu_dataset("ENZYMES", str(root), download=False)
    assert len(ds) == 600 and ds.num_classes == 6
    assert ds.num_edge_types == 1
    assert int(ds[3].edge_type.abs().sum()) == 0


def test_missing_files_offline_name_them_and_the_option(tmp_path,
                                                        cache_dir) -> None:
    raw = tmp_path / "data" / "TUDataset" / "MUTAG" / "raw"
    raw.mkdir(parents=True)
    (raw / "MUTAG_A.txt").write_text("1, 2\n")
    with pytest.raises(DatasetNotFoundError) as info:
        load_tu_dataset("MUTAG", str(tmp_path / "data"), download=False)
    text = str(info.value)
    assert "MUTAG_graph_indicator.txt" in text
    assert "MUTAG_graph_labels.txt" in text
    assert "2 raw file(s) missing" in text  # MUTAG_A.txt is there
    assert "--data-root" in text and "PYG_RBP_DATA_ROOT" in text


def test_stratified_folds_partition_and_keep_proportions() -> None:
    labels = torch.tensor([0] * 63 + [1] * 125)  # MUTAG's class sizes
    parts = stratified_folds(labels, 10, seed=0)
    every = torch.cat(parts).sort().values
    assert torch.equal(every, torch.arange(188))  # each graph exactly once
    sizes = [p.numel() for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for p in parts:  # 6-7 of class 0 in every fold of 18-19
        assert 6 <= int((labels[p] == 0).sum()) <= 7
    # seeded: same seed, same folds; another seed, other folds
    assert all(torch.equal(a, b) for a, b in
               zip(parts, stratified_folds(labels, 10, seed=0)))
    assert not all(torch.equal(a, b) for a, b in
                   zip(parts, stratified_folds(labels, 10, seed=1)))


def test_fold_split_is_disjoint_and_validates_on_training_graphs() -> None:
    labels = torch.tensor([0] * 63 + [1] * 125)
    tests = []
    for fold in range(10):
        train, val, test = fold_split(labels, fold, 10, seed=0)
        tests.append(test)
        assert not set(train.tolist()) & set(val.tolist())
        assert not set(train.tolist()) & set(test.tolist())
        assert not set(val.tolist()) & set(test.tolist())
        assert train.numel() + val.numel() + test.numel() == 188
        assert val.numel() == 18  # 10 % of each class: round(6.3), round(12.5)
        assert int((labels[val] == 0).sum()) == 6
    # the test parts of the 10 folds cover every graph once
    assert torch.equal(torch.cat(tests).sort().values, torch.arange(188))


@pytest.mark.parametrize("call, err, match", [
    (lambda y: stratified_folds(y, 1, 0), ValueError, "'folds' must be >= 2"),
    (lambda y: stratified_folds(y, 7, 0), ValueError,
     r"at most the size of the smallest class \(5\) \(got 7\)"),
    (lambda y: fold_split(y, 3, 3, 0), ValueError,
     r"'fold' must be in \[0, 3\) \(got 3\)"),
    (lambda y: fold_split(y, 0, 3, 0, val_fraction=1.5), ValueError,
     r"'val_fraction' must be in \(0, 1\)"),
])
def test_bad_fold_options(call, err, match) -> None:
    labels = torch.tensor([0] * 5 + [1] * 9)
    with pytest.raises(err, match=match):
        call(labels)
