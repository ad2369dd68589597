"""The chains benchmark: the generator, the IGNN contender and the example."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_rbp import RBPGatedGraphConv
from pyg_rbp.data import chains
from pyg_rbp.nn import IGNNConv
from pyg_rbp.nn.ignn_conv import project_rows_l1, spectral_radius

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import chains as chains_example  # noqa: E402


def test_generator_layout() -> None:
    d = chains(classes=3, chains_per_class=4, length=5, num_features=10,
               seed=0)
    assert d.num_nodes == 60 and d.x.shape == (60, 10)
    # heads carry the class one-hot; every other feature is zero
    heads = torch.arange(12) * 5
    assert torch.equal(d.x[heads].argmax(-1), d.y[heads])
    assert float(d.x.sum()) == 12.0
    assert torch.equal(d.position[heads], torch.zeros(12, dtype=torch.long))
    # directed i -> i+1 inside each chain, none across chains
    src, dst = d.edge_index
    assert d.edge_index.size(1) == 12 * 4
    assert torch.equal(dst, src + 1)
    assert torch.equal(d.chain[src], d.chain[dst])
    assert torch.equal(d.y, d.chain // 4)
    # 5 / 10 / 85 %, disjoint and covering
    masks = torch.stack([d.train_mask, d.val_mask, d.test_mask])
    assert torch.equal(masks.sum(0), torch.ones(60, dtype=torch.long))
    assert masks.sum(1).tolist() == [3, 6, 51]


def test_generator_seeds_noise_and_undirected() -> None:
    a = chains(length=7, seed=1)
    b = chains(length=7, seed=1)
    c = chains(length=7, seed=2)
    assert torch.equal(a.train_mask, b.train_mask)
    assert not torch.equal(a.train_mask, c.train_mask)
    noisy = chains(length=7, feature_noise=0.1, seed=1)
    assert 0.05 < float((noisy.x - a.x).std()) < 0.15
    und = chains(length=7, directed=False)
    assert und.edge_index.size(1) == 2 * a.edge_index.size(1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(classes=1), "'classes' must be >= 2"),
    (dict(classes=5, num_features=3), "'classes' must be at most"),
    (dict(length=0), "'length' must be >= 1"),
    (dict(feature_noise=-1.0), "'feature_noise' must be >= 0"),
    (dict(train=0.6, val=0.5), "train \\+ val < 1"),
])
def test_generator_bad_options(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        chains(**kwargs)


def test_project_rows_l1() -> None:
    w = torch.tensor([[3.0, -1.0, 0.5], [0.1, 0.2, -0.1]])
    p = project_rows_l1(w, 1.0)
    assert torch.equal(p[1], w[1])  # inside the ball: unchanged
    assert float(p[0].abs().sum()) == pytest.approx(1.0)
    # the projection of (3, -1, 0.5) on the l1 ball: soft-threshold at 2
    torch.testing.assert_close(p[0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(project_rows_l1(p, 1.0), p)  # idempotent
    # matches a brute-force search of the nearest point on random rows
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    p = project_rows_l1(w, 0.7)
    assert bool((p.abs().sum(-1) <= 0.7 + 1e-12).all())
    for _ in range(200):  # no other point of the ball is nearer
        q = torch.randn(20, 6, generator=gen, dtype=torch.float64)
        q = q / q.abs().sum(-1, keepdim=True) * 0.7 * torch.rand(
            20, 1, generator=gen, dtype=torch.float64)
        assert bool(((w - q).norm(dim=-1) >= (w - p).norm(dim=-1)
                     - 1e-12).all())


def test_spectral_radius_of_a_chain_with_self_loops() -> None:
    conv = IGNNConv(3, 4)
    d = chains(length=6, chains_per_class=1)
    adj = conv.normalized_adjacency(d.edge_index, d.num_nodes, torch.float64)
    # lower-triangular: the eigenvalues are the diagonal, the head's is 1
    assert spectral_radius(adj) == pytest.approx(1.0, abs=1e-6)


def test_ignn_gradients_match_a_dense_solve() -> None:
    torch.manual_seed(0)
    d = chains(length=4, chains_per_class=1, num_features=3)
    conv = IGNNConv(3, 4, kappa=0.5, num_layers=200, tol=0.0,
                    backward_steps=200, backward_tol=1e-14).double()
    x = d.x.double()
    conv(x, d.edge_index)
    conv.project_()
    out = conv(x, d.edge_index)
    assert float(conv.weight.abs().sum(-1).max()) <= 0.5 + 1e-12
    target = torch.randn_like(out)
    grads = torch.autograd.grad((out * target).sum(), list(
        conv.parameters()))
    # dense oracle: z = (I - J^T)^-1 g at the fixed point, then dF/dw^T z
    adj = conv.normalized_adjacency(d.edge_index, d.num_nodes, x.dtype)
    inj = adj @ (x @ conv.input_weight.t()) + conv.bias

    def f(h):
        return torch.relu(adj @ (h @ conv.weight.t()) + inj)

    h = out.detach()
    n = h.numel()
    jac = torch.autograd.functional.jacobian(f, h).reshape(n, n)
    z = torch.linalg.solve(torch.eye(n, dtype=h.dtype) - jac.T,
                           target.reshape(-1)).reshape(h.shape)
    expected = torch.autograd.grad(f(h), list(conv.parameters()), z)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)


def test_identity_state_init() -> None:
    conv = RBPGatedGraphConv(6, state_init="identity", identity_gain=2.5,
                             cell="gru")
    torch.testing.assert_close(conv.weight, torch.eye(6))
    torch.testing.assert_close(conv.rnn.weight_ih[12:, :6],
                               2.5 * torch.eye(6))
    typed = RBPGatedGraphConv(6, num_edge_types=3, state_init="identity",
                              cell="gru")
    torch.testing.assert_close(typed.weight, torch.eye(6).expand(3, 6, 6))
    with pytest.raises(ValueError, match="'state_init' must be one of"):
        RBPGatedGraphConv(6, state_init="orthogonal", cell="gru")
    with pytest.raises(ValueError, match="'identity_gain' must be a positive"):
        RBPGatedGraphConv(6, identity_gain=0.0, cell="gru")


def test_two_classes_at_length_20_are_learnt_in_seconds() -> None:
    args = chains_example.parse_args(
        ["--length", "20", "--classes", "2", "--seeds", "1",
         "--max-epochs", "200"])
    rec = chains_example.run_seed(args, 0)
    assert rec["test_acc"] >= 0.95
    assert rec["mean_forward_steps"] > 20  # the forward reached the tail


@pytest.mark.slow
def test_example_writes_its_json(tmp_path) -> None:
    out = tmp_path / "r.json"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    run = subprocess.run(
        [sys.executable, "examples/chains.py", "--length", "8", "--classes",
         "2", "--seeds", "2", "--max-epochs", "5", "--model", "ignn",
         "--threads", "1", "--output-json", str(out)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert len(r["seeds"]) == 2
    assert r["test_acc"] == pytest.approx(
        sum(s["test_acc"] for s in r["seeds"]) / 2)
    for key in ("forward_steps", "backward_steps", "saved_bytes",
                "peak_rss_bytes", "epoch_s"):
        assert key in r
