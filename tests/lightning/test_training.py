"""Lightning training on Cora: it learns, it logs, it resumes exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pyg_rbp.lightning import (NodeClassificationModule, NodeDataModule,
                               TrainConfig, train_node_classifier)
from tests.conftest import needs_data, shared_data_root

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow

FAST = dict(dataset="Cora", num_layers=10, backward_steps=5, hidden=64,
            input_dropout=0.5,
            accelerator="cpu", progress_bar=False)


@needs_data
def test_short_cora_run_learns_and_reports(tmp_path, cache_dir) -> None:
    out_json = tmp_path / "run.json"
    result = train_node_classifier(TrainConfig(
        **FAST, method="neumann", max_epochs=40,
        data_root=str(shared_data_root()),
        output_dir=str(tmp_path / "out"), output_json=str(out_json),
        plot=str(tmp_path / "plots")))
    # 7 classes, the largest holds 30% of the test nodes: well above chance
    assert result["test_acc"] > 0.6
    assert result["epochs"] == 40
    saved = json.loads(out_json.read_text())
    for key in ("test_acc", "val_acc", "epochs", "wall_s",
                "peak_memory_bytes", "mean_forward_steps"):
        assert key in saved
    assert saved["test_acc"] == pytest.approx(result["test_acc"])
    assert 1 <= saved["mean_forward_steps"] <= 10
    for name in ("curves.png", "residual.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every per-epoch metric the issue lists was logged
    last = result["history"][-1]
    for key in ("train_loss", "train_acc", "val_acc", "test_acc", "val_loss",
                "fwd_steps", "fwd_residual", "bwd_steps", "bwd_residual",
                "saved_mib", "fwd_converged", "bwd_converged", "unrolled"):
        assert key in last, key
    assert last["bwd_steps"] <= 5
    # the shares of training calls: Neumann never unrolls; the report has
    # the means of the per-epoch shares
    assert last["unrolled"] == 0.0
    assert 0.0 <= last["fwd_converged"] <= 1.0
    assert saved["unrolled"] == 0.0 and saved["forward_converged"] == \
        pytest.approx(sum(e["fwd_converged"] for e in result["history"]
                          if "fwd_converged" in e) /
                      sum("fwd_converged" in e for e in result["history"]))


@needs_data
def test_methods_share_the_module(tmp_path, cache_dir) -> None:
    """Every method trains through the same module; RBP keeps less memory."""
    saved = {}
    for method in ("neumann", "cg", "fixed_point", "tbptt", "bptt"):
        r = train_node_classifier(TrainConfig(
            **{**FAST, "num_layers": 20}, method=method, max_epochs=2,
            tol=0.0, data_root=str(shared_data_root()),
            output_dir=str(tmp_path / method)))
        saved[method] = r["peak_saved_bytes"]
    assert saved["neumann"] == saved["fixed_point"]
    # CG's J u products need the state's gradient path: the recorded step
    # then also keeps the [C, C] message weights for it (64 x 64 floats)
    assert 0 <= saved["cg"] - saved["neumann"] <= 64 * 64 * 4
    # the encoder and the penalty graph are the same for all: 4.5x at T=20
    assert saved["bptt"] > 3 * saved["neumann"]
    assert saved["neumann"] < saved["tbptt"] < saved["bptt"]


def _params(module: NodeClassificationModule) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


@needs_data
def test_resume_continues_exactly(tmp_path, cache_dir) -> None:
    """6 epochs in one go == 3 epochs, stop, resume from last.ckpt to 6."""
    base = dict(**FAST, data_root=str(shared_data_root()), seed=3)
    whole = train_node_classifier(TrainConfig(
        **base, max_epochs=6, output_dir=str(tmp_path / "whole")))
    first = train_node_classifier(TrainConfig(
        **base, max_epochs=3, output_dir=str(tmp_path / "split")))
    last = Path(first["best_checkpoint"]).parent / "last.ckpt"
    assert last.is_file()
    resumed = train_node_classifier(TrainConfig(
        **base, max_epochs=6, output_dir=str(tmp_path / "split"),
        resume=str(last)))
    assert [h["epoch"] for h in resumed["history"]] == [3, 4, 5]
    for a, b in zip(whole["history"][3:], resumed["history"]):
        for key in ("train_loss", "val_acc", "test_acc", "fwd_residual"):
            assert a[key] == b[key], (key, a["epoch"])
    # and the weights at the end are the same
    wa = torch.load(Path(whole["best_checkpoint"]).parent / "last.ckpt",
                    weights_only=True)["state_dict"]
    wb = torch.load(Path(resumed["best_checkpoint"]).parent / "last.ckpt",
                    weights_only=True)["state_dict"]
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@needs_data
def test_datamodule_loaders(tmp_path, cache_dir) -> None:
    dm = NodeDataModule("Cora", str(shared_data_root()), loader="neighbor",
                        batch_size=64, num_neighbors=(5, 5))
    dm.setup()
    batches = list(dm.train_dataloader())
    assert sum(b.batch_size for b in batches) == 140
    assert all(bool(dm.data.train_mask[b.n_id[:b.batch_size]].all())
               for b in batches)
    whole = next(iter(dm.val_dataloader()))
    assert whole.num_nodes == 2708
    shards = [dm.train_nodes(r, 2) for r in range(2)]
    assert shards[0].numel() == shards[1].numel() == 70
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


@needs_data
def test_bf16_mixed_precision_trains(tmp_path, cache_dir) -> None:
    """Lightning's precision='bf16-mixed' (CPU autocast): it trains, the
    propagation iterates in bf16 and finishes in float32."""
    base = dict(**FAST, max_epochs=25, data_root=str(shared_data_root()),
                seed=1)
    bf16 = train_node_classifier(TrainConfig(
        **base, precision="bf16-mixed", output_dir=str(tmp_path / "bf16")))
    fp32 = train_node_classifier(TrainConfig(
        **base, output_dir=str(tmp_path / "fp32")))
    assert bf16["test_acc"] > 0.6
    assert abs(bf16["test_acc"] - fp32["test_acc"]) < 0.05
    # the precision reached the computation: the two runs differ
    assert bf16["history"][-1]["train_loss"] != \
        fp32["history"][-1]["train_loss"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(dataset="cora"), "'dataset' must be one of 'Cora', 'CiteSeer'"),
    (dict(method="rbp"), "'method' must be one of 'neumann'"),
    (dict(devices=2, loader="full"), "use --loader neighbor"),
    (dict(loader="cluster"), "'loader' must be one of 'full', 'neighbor'"),
    (dict(resume="/no/such.ckpt"), "no checkpoint file"),
])
def test_config_refuses_bad_options(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs).check()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@needs_data
@pytest.mark.parametrize("precision", [None, "bf16-mixed", "16-mixed"])
def test_trains_on_cuda(tmp_path, cache_dir, precision) -> None:
    result = train_node_classifier(TrainConfig(
        **{**FAST, "accelerator": "gpu"}, max_epochs=20, precision=precision,
        data_root=str(shared_data_root()), output_dir=str(tmp_path)))
    assert result["test_acc"] > 0.5
    assert result["peak_memory_bytes"] > 0
