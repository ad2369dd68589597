"""HopfieldConv and the MNIST patterns behind the Hopfield example."""
from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_rbp import HopfieldConv
from pyg_rbp.data import DatasetNotFoundError
from pyg_rbp.data.mnist import load_digit_patterns, read_idx
from tests.conftest import shared_data_root

ROOT = Path(__file__).resolve().parents[2]


def _complete_graph(n: int) -> torch.Tensor:
    idx = torch.arange(n)
    src, dst = idx.repeat_interleave(n), idx.repeat(n)
    keep = src != dst
    return torch.stack([src[keep], dst[keep]])


def test_weights_are_symmetric_without_self_loops() -> None:
    net = HopfieldConv(6)
    w = net.symmetric_weight()
    torch.testing.assert_close(w, w.t())
    assert torch.equal(torch.diagonal(w), torch.zeros(6))


def test_dense_path_equals_message_passing_on_the_complete_graph() -> None:
    net = HopfieldConv(7, num_steps=20, tol=0.0)
    inputs = torch.randn(7, 3)
    clamp = torch.tensor([True, True, False, False, False, False, False])
    dense = net(inputs, clamp)
    sparse = net(inputs, clamp, edge_index=_complete_graph(7))
    torch.testing.assert_close(dense, sparse)
    # clamped neurons keep their input values
    torch.testing.assert_close(dense[:2], inputs[:2])


def test_implicit_gradient_matches_a_dense_solve() -> None:
    torch.manual_seed(0)
    net = HopfieldConv(8, num_steps=200, tol=0.0, backward_steps=300,
                       backward_tol=1e-14).double()
    inputs = torch.randn(8, 2, dtype=torch.float64)
    clamp = torch.zeros(8, dtype=torch.bool)
    clamp[:3] = True
    target = torch.rand(5, 2, dtype=torch.float64)

    def loss(h):
        return (net.phi(h[3:]) - target).abs().sum()

    h = net(inputs, clamp)
    (grad, ) = torch.autograd.grad(loss(h), net.weight)
    step, _ = net.fixed_point_map(inputs, clamp)
    h_star = h.detach()
    jac = torch.autograd.functional.jacobian(step, h_star).reshape(16, 16)
    h_req = h_star.clone().requires_grad_()
    (g, ) = torch.autograd.grad(loss(h_req), h_req)
    z = torch.linalg.solve(torch.eye(16, dtype=torch.float64) - jac.t(),
                           g.reshape(-1)).reshape(8, 2)
    (expected, ) = torch.autograd.grad(step(h_star), net.weight, z)
    assert float((grad - expected).norm() / expected.norm()) < 1e-8


def test_bad_inputs() -> None:
    net = HopfieldConv(5)
    with pytest.raises(ValueError, match=r"'inputs' must have shape \[5, B\]"):
        net(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="'clamp_mask' must be a bool"):
        net(torch.zeros(5, 2), torch.zeros(5))
    with pytest.raises(ValueError, match="'a', 'b' and 'dt' must be > 0"):
        HopfieldConv(5, a=0.0)
    with pytest.raises(ValueError, match="'activation' must be one of"):
        HopfieldConv(5, activation="relu")


def _write_idx(path: Path, array: torch.Tensor) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.dim()) + \
        struct.pack(f">{array.dim()}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + bytes(array.to(torch.uint8).reshape(-1).tolist()))


def test_idx_reader_and_first_image_per_digit(tmp_path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = torch.zeros(12, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([3, 1, 0, 2, 4, 5, 6, 7, 8, 9, 1, 3])
    for i in range(12):
        images[i, i, :] = 200  # image i has row i lit
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels)
    assert torch.equal(read_idx(raw / "t10k-labels-idx1-ubyte.gz"), labels)
    patterns, digits = load_digit_patterns(tmp_path)
    assert patterns.shape == (10, 784) and digits.tolist() == list(range(10))
    # digit 3's first image is image 0 (row 0 lit), digit 1's is image 1
    assert patterns[3].view(28, 28)[0].sum() == 28
    assert patterns[1].view(28, 28)[1].sum() == 28
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(b"\x12\x34\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)


def test_missing_mnist_names_the_files(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        load_digit_patterns(tmp_path / "none")


@pytest.mark.slow
@pytest.mark.skipif(shared_data_root() is None or not (
    shared_data_root() / "MNIST" / "raw").is_dir(), reason="no MNIST")
def test_hopfield_example_trains_and_retrieves(tmp_path) -> None:
    out = tmp_path / "h.json"
    run = subprocess.run(
        [sys.executable, "examples/hopfield.py", "--method", "neumann",
         "--truncation", "20", "--epochs", "150", "--size", "10",
         "--data-root", str(shared_data_root()), "--output-json", str(out),
         "--plot", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        timeout=600, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["success_rate"] == 1.0
    r = result["runs"][0]
    assert r["final_loss"] < 0.5 * r["initial_loss"]
    # better than chance: the best constant guess (all pixels off) scores
    # the patterns' mean density, about 0.17 at 10 x 10
    patterns, _ = load_digit_patterns(shared_data_root(), 10)
    assert r["retrieval_l1"] < 0.8 * float(patterns.mean())
    png = tmp_path / "hopfield_retrieval.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_uniform_start_is_the_papers_and_not_scale_invariant() -> None:
    """FixedPoint(init='uniform') starts from U(0, 1) whatever ||g||: with
    few iterations its result moves with the loss scale; 'random' (ours)
    scales the start with ||g||, so the gradient scales exactly."""
    from pyg_rbp.implicit.adjoint import fixed_point
    gen = torch.Generator().manual_seed(0)
    jac = 0.9 * torch.randn(6, 6, generator=gen, dtype=torch.double) / 6
    g = torch.randn(6, generator=gen, dtype=torch.double)

    def solve(init: str, scale: float):
        torch.manual_seed(3)
        return fixed_point(lambda v: jac.T @ v, scale * g, 2, 0.0, init).z
    for init, invariant in (("random", True), ("uniform", False)):
        a, b = solve(init, 1.0), solve(init, 1e4)
        assert torch.allclose(b / 1e4, a, rtol=1e-10) == invariant


@pytest.mark.slow
@pytest.mark.skipif(shared_data_root() is None or not (
    shared_data_root() / "MNIST" / "raw").is_dir(), reason="no MNIST")
def test_hopfield_example_resumes_per_trial(tmp_path) -> None:
    argv = [sys.executable, "examples/hopfield.py", "--method",
            "fixed_point", "--rbp-init", "uniform", "--truncation", "10",
            "--trials", "2", "--epochs", "3", "--data-root",
            str(shared_data_root()), "--resume-dir", str(tmp_path / "runs")]
    first = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    records = sorted((tmp_path / "runs").glob("*.json"))
    assert [p.name for p in records] == [
        "fixed_point_uniform_K10_s0_size10_h100.json",
        "fixed_point_uniform_K10_s1_size10_h100.json"]
    kept = [json.loads(p.read_text()) for p in records]
    assert kept[0]["rbp_init"] == "uniform"
    # the images only for seed 0 (the plot's), rounded: records stay small
    assert len(kept[0]["retrieved"]) == 10 and kept[1]["retrieved"] is None
    assert all(v == round(v, 3) for v in kept[0]["retrieved"][0])
    records[1].unlink()  # as if interrupted during the second trial
    stamp = records[0].stat().st_mtime_ns
    again = subprocess.run(argv + ["--plot", str(tmp_path / "img")],
                           cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "img" / "hopfield_retrieval.png").is_file()
    assert records[0].stat().st_mtime_ns == stamp  # read, not retrained
    assert records[1].is_file()
    # the table lines agree: the same trials
    def rows(out: str) -> list:
        return [line for line in out.splitlines() if line.startswith("| RBP")]
    assert rows(first.stdout) == rows(again.stdout) and rows(first.stdout)
