"""Data roots, splits, read-only folders and the offline error."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_rbp.data import (DatasetNotFoundError, load_node_dataset,
                          resolve_data_root)
from pyg_rbp.data.planetoid import planetoid_raw_files
from tests.conftest import needs_data, shared_data_root

ROOT = Path(__file__).resolve().parents[2]


def _read_only_copy(tmp_path: Path, names=("Cora", )) -> Path:
    """A data root like ../shared/data: every folder without write bits."""
    root = tmp_path / "ro"
    for name in names:
        shutil.copytree(shared_data_root() / "Planetoid" / name / "raw",
                        root / "Planetoid" / name / "raw")
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return root


def test_data_root_resolution(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYG_RBP_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("PYG_RBP_DATA_ROOT")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "pyg_rbp"


@needs_data
def test_public_split_and_read_only_root(tmp_path, cache_dir) -> None:
    root = _read_only_copy(tmp_path)
    data = load_node_dataset("Cora", str(root))
    assert data.num_nodes == 2708 and data.num_classes == 7
    assert int(data.train_mask.sum()) == 140
    assert int(data.val_mask.sum()) == 500
    assert int(data.test_mask.sum()) == 1000
    # rows are normalised to sum 1 (PyG's NormalizeFeatures)
    sums = data.x.sum(-1)
    torch.testing.assert_close(sums[sums > 0], torch.ones_like(sums[sums > 0]))
    # the read-only root was left alone; PyG processed a copy in the cache
    assert not (root / "Planetoid" / "Cora" / "processed").exists()
    assert (cache_dir / "Planetoid" / "Cora" / "processed").is_dir()
    # or the raw binary bag-of-words (what the contractive model trains on)
    raw = load_node_dataset("Cora", str(root), normalize_features=False)
    assert set(raw.x.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(raw.x / raw.x.sum(-1, keepdim=True)
                               .clamp_min(1), data.x)


@needs_data
def test_paper_split_is_seeded_and_disjoint(tmp_path, cache_dir) -> None:
    root = _read_only_copy(tmp_path)
    a = load_node_dataset("Cora", str(root), split="paper", seed=1)
    b = load_node_dataset("Cora", str(root), split="paper", seed=1)
    c = load_node_dataset("Cora", str(root), split="paper", seed=2)
    n = a.num_nodes
    assert int(a.train_mask.sum()) == round(0.01 * n)
    assert int(a.val_mask.sum()) == round(0.49 * n)
    assert int((a.train_mask | a.val_mask | a.test_mask).sum()) == n
    assert int((a.train_mask & a.val_mask).sum()) == 0
    assert int((a.val_mask & a.test_mask).sum()) == 0
    assert torch.equal(a.train_mask, b.train_mask)
    assert not torch.equal(a.train_mask, c.train_mask)


@needs_data
def test_missing_files_offline_name_them(tmp_path, cache_dir) -> None:
    raw = tmp_path / "root" / "Planetoid" / "Cora" / "raw"
    shutil.copytree(shared_data_root() / "Planetoid" / "Cora" / "raw", raw)
    (raw / "ind.cora.tx").unlink()
    (raw / "ind.cora.graph").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_node_dataset("Cora", str(tmp_path / "root"), download=False)
    msg = str(err.value)
    assert "ind.cora.tx" in msg and "ind.cora.graph" in msg
    assert "--data-root" in msg and "PYG_RBP_DATA_ROOT" in msg
    assert "ind.cora.x" not in msg


def test_failed_download_is_one_clear_error(tmp_path, cache_dir,
                                            monkeypatch) -> None:
    """With downloads on but no network, PyG's failure becomes our error."""
    from torch_geometric.datasets import Planetoid

    def offline(self):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(Planetoid, "download", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        load_node_dataset("CiteSeer", str(tmp_path / "empty"))
    msg = str(err.value)
    assert all(name in msg for name in planetoid_raw_files("CiteSeer")[:3])
    assert "Downloading them failed (OSError: Network is unreachable)" in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.slow
def test_example_reports_missing_data_without_traceback(tmp_path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONWARNINGS="ignore")
    out = subprocess.run(
        [sys.executable, "examples/citation.py", "--data-root",
         str(tmp_path / "nothing"), "--offline", "--max-epochs", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "error: Cora: 8 raw file(s) missing" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--dataset", "Pubmed"], "invalid choice: 'Pubmed'"),
    (["--method", "adjoint"], "invalid choice: 'adjoint'"),
    (["--devices", "2", "--loader", "full"], "use --loader neighbor"),
])
def test_example_refuses_bad_flags(argv, message) -> None:
    out = subprocess.run([sys.executable, "examples/citation.py", *argv],
                         cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ,
                                               PYTHONWARNINGS="ignore"))
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@needs_data
def test_full_batch_graph_moves_to_the_device_once(cache_dir) -> None:
    """setup() puts the whole graph on the trainer's device, so no step
    copies it again ('meta' stands in for a GPU here)."""
    from types import SimpleNamespace

    from pyg_rbp.lightning import NodeDataModule
    dm = NodeDataModule("Cora", str(shared_data_root()), download=False)
    dm.trainer = SimpleNamespace(
        world_size=1, strategy=SimpleNamespace(root_device=torch.device(
            "meta")))
    dm.setup("fit")
    assert dm.data.x.device.type == "meta"
    assert dm.data.edge_index.device.type == "meta"


def test_a_failed_download_leaves_no_folders_behind(tmp_path) -> None:
    """A mistyped --data-root must not create that tree on disk: what a
    failed download made (folders, no files) is removed again."""
    from pyg_rbp.data import DatasetNotFoundError
    from pyg_rbp.data.root import open_dataset
    raw = tmp_path / "typo" / "Planetoid" / "Cora" / "raw"

    def build():
        raw.mkdir(parents=True)  # as PyG does before it downloads
        raise ConnectionError("no network")
    with pytest.raises(DatasetNotFoundError, match="Downloading them failed"):
        open_dataset("Cora", raw, ["ind.cora.x"], True, build)
    assert not (tmp_path / "typo").exists()
    # a folder that existed before, or one holding files, is kept
    (tmp_path / "kept").mkdir()
    raw = tmp_path / "kept" / "Planetoid" / "raw"

    def build_with_file():
        raw.mkdir(parents=True)
        (raw / "partial").write_text("x")
        raise ConnectionError("no network")
    with pytest.raises(DatasetNotFoundError):
        open_dataset("Cora", raw, ["ind.cora.x"], True, build_with_file)
    assert (raw / "partial").is_file()


def test_names_any_case_and_bad_arguments(tmp_path, cache_dir) -> None:
    """PyG's Planetoid takes 'cora'; so do we. A data root passed as the
    name (the arguments swapped) or an unknown split is a ValueError that
    says what was expected, not a list of odd missing files."""
    from pyg_rbp.data import load_planetoid
    with pytest.raises(ValueError, match="'name' must be one of"):
        load_planetoid(str(tmp_path), "Cora")
    with pytest.raises(ValueError, match="'split' must be one of"):
        load_planetoid("Cora", str(tmp_path), split="random")
    if shared_data_root() is not None:
        root = _read_only_copy(tmp_path)
        data = load_planetoid("cora", str(root))
        assert data.name == "Cora" and data.num_nodes == 2708
