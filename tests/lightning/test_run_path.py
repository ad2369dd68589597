"""The one run path: configs, the generated command lines, --config and
--print-config, the Trainer, the DataModules on the user's own data, and
the README's main job end to end on a tiny budget."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data, InMemoryDataset

from pyg_rbp.lightning import (BabiTrainConfig, GraphClassificationModule,
                               GraphDataModule, GraphTrainConfig,
                               NodeClassificationModule, NodeDataModule,
                               RunConfig, TrainConfig, make_trainer)
from pyg_rbp.lightning.config import build_parser, parse_config
from pyg_rbp.lightning.runner import EpochHistory
from pyg_rbp.lightning.base import check_jacobian_weight
from tests.conftest import needs_data, shared_data_root

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [TrainConfig, GraphTrainConfig, BabiTrainConfig]


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_field_is_a_flag_with_help(cls) -> None:
    parser = build_parser(cls, "x")
    dests = {}
    for a in parser._actions:  # the field's own flag, not an alias
        dests.setdefault(a.dest, a)
    for f in dataclasses.fields(cls):
        assert f.name in dests, f.name
        assert dests[f.name].help, f"--{f.name} has no help"
        assert dests[f.name].default == (
            list(getattr(cls(), f.name))
            if isinstance(getattr(cls(), f.name), (list, tuple))
            else getattr(cls(), f.name)), f.name
    # the shared fields are declared once, in RunConfig
    shared = {f.name for f in dataclasses.fields(RunConfig)}
    assert {"method", "num_layers", "backward_steps", "gradient_clip",
            "backward_tol", "precision", "download"} <= shared


@pytest.mark.parametrize("cls", CONFIGS)
def test_defaults_are_the_dataclass_defaults(cls) -> None:
    cfg, show = parse_config(cls, [], "x")
    assert cfg == cls() and not show


def test_flags_parse_into_typed_fields() -> None:
    cfg, _ = parse_config(GraphTrainConfig, [
        "--method", "cg", "--backward-steps", "7", "--fold", "1", "3",
        "--no-edge-types", "--batch-wide-stopping", "--offline",
        "--normalize", "--gradient-clip", "0.5", "--val-fraction", "0.2"],
        "x")
    assert (cfg.method, cfg.backward_steps, cfg.fold) == ("cg", 7, [1, 3])
    assert cfg.edge_types is False and cfg.per_graph_stopping is False
    assert cfg.download is False and cfg.normalize is True
    assert cfg.gradient_clip == 0.5 and cfg.val_fraction == 0.2
    cfg, _ = parse_config(TrainConfig, ["--num-neighbors", "5", "3"], "x")
    assert cfg.num_neighbors == [5, 3]
    cfg, _ = parse_config(BabiTrainConfig, ["--fold", "2", "9",
                                            "--num-layers", "40"], "x")
    assert cfg.fold == [2, 9] and cfg.num_layers == 40
    # bAbI's former --folds (a list, where graph classification's is k)
    old, _ = parse_config(BabiTrainConfig, ["--folds", "2", "9"], "x")
    with pytest.warns(DeprecationWarning, match="now 'fold'"):
        old.check()
    assert old.fold == [2, 9] and old.folds is None
    assert cfg.layer_options() == {"method": "hybrid", "num_layers": 40}


def test_config_file_then_flags(tmp_path) -> None:
    """--print-config writes a file that --config reads back to the same
    config; a flag beats the file; an unknown key is refused by name."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "citation.py"),
         "--print-config", "--dataset", "CiteSeer", "--lr", "0.001",
         "--num-neighbors", "5", "3", "--no-progress-bar"],
        capture_output=True, text=True, check=True)
    path = tmp_path / "run.yaml"
    path.write_text(out.stdout)
    cfg, _ = parse_config(TrainConfig, ["--config", str(path)], "x")
    assert cfg == TrainConfig(dataset="CiteSeer", lr=0.001,
                              num_neighbors=[5, 3], progress_bar=False)
    cfg, _ = parse_config(TrainConfig, ["--config", str(path),
                                        "--lr", "0.1"], "x")
    assert cfg.lr == 0.1 and cfg.dataset == "CiteSeer"
    # YAML 1.1 reads 1e-3 as a string: the flag's type converts it
    path.write_text("lr: 1e-3\nmax-epochs: 7\n")
    cfg, _ = parse_config(GraphTrainConfig, ["--config", str(path)], "x")
    assert cfg.lr == 0.001 and cfg.max_epochs == 7
    path.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) "
                                         r"\['learning_rate'\]"):
        parse_config(GraphTrainConfig, ["--config", str(path)], "x")
    # the graph example's own flag (--conv) round-trips through it
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "graph_classification.py"),
         "--print-config", "--conv", "pyg", "--method", "bptt"],
        capture_output=True, text=True, check=True)
    assert "conv: pyg" in out.stdout and "method: bptt" in out.stdout
    refused = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "graph_classification.py"),
         "--print-config", "--conv", "none"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "--conv none: no propagation" in refused.stderr
    assert "--method bptt (got --method hybrid)" in refused.stderr


@pytest.mark.parametrize("cls, kwargs, match", [
    (GraphTrainConfig, dict(dataset="mutag"), "'dataset' must be one of"),
    (GraphTrainConfig, dict(val_fraction=1.5), "'val_fraction' must be in"),
    (BabiTrainConfig, dict(task=5), r"'task' must be one of \(4, 15"),
    (BabiTrainConfig, dict(fold=[11]), r"'fold' must be one of"),
    (TrainConfig, dict(precision="fp8"), "'precision' must be one of"),
    (TrainConfig, dict(gradient_clip=-1.0), "'gradient_clip' must be"),
    (TrainConfig, dict(lr=-1.0), "'lr' must be a finite number >= 0"),
    (TrainConfig, dict(num_neighbors=[5, -2]), "'num_neighbors' must be >= -1"),
    (BabiTrainConfig, dict(train_examples=0), "'train_examples' must be >= 1"),
    (BabiTrainConfig, dict(question_types=[2, 0]),
     "'question_types' must be >= 1"),
    (GraphTrainConfig, dict(folds=1), "'folds' must be >= 2"),
    (GraphTrainConfig, dict(fold=[10]), r"--fold 10 is not in \[0, 10\)"),
    (TrainConfig, dict(cell="lstm"), r"'cell' must be one of"),
    (TrainConfig, dict(carry=1.0), r"'carry' must be in \(0, 1\)"),
])
def test_one_check_at_the_boundary(cls, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs).check()


@pytest.mark.parametrize("cls", [TrainConfig, GraphTrainConfig])
def test_the_cell_sets_the_penalty_and_the_layer_its_solver(cls) -> None:
    """Unset, the Jacobian penalty is on (weight 1) for the GRU step, which
    may stop contracting, and off for the contractive step; the solver is
    the layer's own (Anderson for the contractive step). The config keeps
    "unset" (a saved config then follows a --cell given with it); the
    module resolves it."""
    default, gru = cls(), cls(cell="gru")
    default.check()
    gru.check()
    assert default.jacobian_weight is None and gru.jacobian_weight is None
    options = default.layer_options()
    assert check_jacobian_weight(default.jacobian_weight, options) == 0.0
    assert options["jacobian_penalty"] is None and "solver" not in options
    options = gru.layer_options()
    assert options["cell"] == "gru"
    assert check_jacobian_weight(gru.jacobian_weight, options) == 1.0
    assert options["jacobian_penalty"] == "spectral"
    explicit = cls(cell="gru", jacobian_weight=0.0)
    explicit.check()
    options = explicit.layer_options()
    assert check_jacobian_weight(explicit.jacobian_weight, options) == 0.0
    assert options["jacobian_penalty"] is None


def test_make_trainer_follows_the_config(tmp_path) -> None:
    cfg = TrainConfig(max_epochs=3, gradient_clip=0.25, accelerator="cpu",
                      progress_bar=False)
    trainer = make_trainer(cfg, tmp_path, "logs", [EpochHistory()])
    assert trainer.max_epochs == 3
    assert trainer.gradient_clip_val == 0.25
    assert trainer.logger.log_dir.startswith(str(tmp_path / "logs"))
    assert not trainer.checkpoint_callbacks
    # node classification clips at 1 by default; 0 switches it off
    assert TrainConfig().gradient_clip == 1.0
    off = make_trainer(TrainConfig(gradient_clip=0.0, accelerator="cpu",
                                   progress_bar=False), tmp_path, "off", [])
    assert off.gradient_clip_val is None


def _planted_graph(n: int = 300, classes: int = 3, seed: int = 0) -> Data:
    """Nodes of a class link mostly inside it; features are noisy labels."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    src = torch.randint(0, n, (20 * n, ), generator=gen)
    dst = torch.randint(0, n, (20 * n, ), generator=gen)
    keep = (y[src] == y[dst]) | (torch.rand(20 * n, generator=gen) < 0.1)
    x = torch.nn.functional.one_hot(y, classes).float() + \
        torch.randn(n, classes, generator=gen)
    mask = torch.rand(n, generator=gen)
    return Data(x=x, edge_index=torch.stack([src[keep], dst[keep]]), y=y,
                train_mask=mask < 0.5, val_mask=(mask >= 0.5) & (mask < 0.7),
                test_mask=mask >= 0.7)


def test_node_datamodule_takes_the_users_graph(tmp_path) -> None:
    data = _planted_graph()
    dm = NodeDataModule(data)
    assert (dm.num_features, dm.num_classes) == (3, 3)
    module = NodeClassificationModule(3, 3, hidden_channels=16,
                                      input_dropout=0.0, dropout=0.0,
                                      num_layers=10, backward_steps=5)
    cfg = TrainConfig(max_epochs=30, accelerator="cpu", progress_bar=False)
    trainer = make_trainer(cfg, tmp_path, "logs", [],
                           use_distributed_sampler=False)
    trainer.fit(module, dm)
    tested = trainer.test(module, dm, verbose=False)[0]
    # the noisy features alone: about 60 %; their neighbours settle it
    m = data.test_mask
    alone = float((data.x.argmax(-1)[m] == data.y[m]).float().mean())
    assert tested["test_acc"] > max(0.9, alone + 0.2)
    bad = data.clone()
    bad.val_mask = bad.val_mask.long()
    with pytest.raises(ValueError, match="'val_mask' must be a bool"):
        NodeDataModule(bad)
    del bad.train_mask
    with pytest.raises(ValueError, match="missing: train_mask"):
        NodeDataModule(bad)


class _Graphs(InMemoryDataset):
    """Graph label = whether the graph has edges of type 1."""

    def __init__(self, count: int = 40) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        graphs = []
        for i in range(count):
            n = 6
            edge_index = torch.stack([torch.arange(n),
                                      (torch.arange(n) + 1) % n])
            label = i % 2
            edge_type = torch.full((n, ), label)
            graphs.append(Data(x=torch.rand(n, 2, generator=gen),
                               edge_index=edge_index, edge_type=edge_type,
                               y=torch.tensor([label])))
        self.data, self.slices = self.collate(graphs)


def test_graph_datamodule_takes_the_users_dataset(tmp_path) -> None:
    dm = GraphDataModule(_Graphs(), fold=0, folds=4, batch_size=8)
    assert (dm.num_features, dm.num_classes, dm.num_edge_types) == (2, 2, 2)
    module = GraphClassificationModule(2, 2, hidden_channels=8,
                                       num_edge_types=2, num_layers=10,
                                       backward_steps=5, lr=0.02)
    history = EpochHistory()
    cfg = GraphTrainConfig(max_epochs=15, accelerator="cpu")
    make_trainer(cfg, tmp_path, "logs", [history]).fit(module, dm)
    assert len(history.epochs) == 15 and history.first_trace
    # the label is the edge type: typed edges learn it exactly
    assert history.epochs[-1]["test_acc"] == 1.0
    with pytest.raises(ValueError, match="4 folds need at least 4 graphs"):
        GraphDataModule(_Graphs(3), folds=4)


@needs_data
def test_main_job_success_path(tmp_path) -> None:
    """README's main job, `python examples/citation.py --method neumann`,
    on a tiny budget: exit 0, the summary table, the JSON report."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "citation.py"),
         "--method", "neumann", "--max-epochs", "3", "--num-layers", "10",
         "--data-root", str(shared_data_root()), "--offline",
         "--no-progress-bar", "--output-dir", str(tmp_path / "o"),
         "--output-json", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| test acc (best val)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["epochs"] == 3 and report["method"] == "neumann"
    assert 0.0 < report["test_acc"] <= 1.0
    # --num-layers 10 reached the layer
    assert 1 <= report["mean_forward_steps"] <= 10
