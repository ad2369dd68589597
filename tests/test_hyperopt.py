"""The hyperparameter experiment: the inner step, the hypergradient against
finite differences, one meta-step in seconds, the example's JSON and plot."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_rbp.hyperopt import (HyperoptConfig, SGDMomentumStep,
                              batch_schedule, hypergradient, init_mlp,
                              meta_train, mlp_hvp, mlp_loss,
                              mlp_loss_and_grad)
from pyg_rbp.implicit import CG, FixedPoint, Neumann, rbp
from pyg_rbp.utils import SavedTensorMeter
from tests.conftest import shared_data_root

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (12, 8, 3)


def _data(n: int = 60, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, LAYERS[0], generator=gen, dtype=torch.double)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, y


def _setup(method: str, steps: int = 6, **kw):
    cfg = HyperoptConfig(method=method, truncation=kw.get("k", steps),
                         inner_steps=steps, batch_size=20, layers=LAYERS,
                         final_batch=kw.get("final_batch", "mini"))
    gen = torch.Generator().manual_seed(1)
    x, y = _data()
    init = [p.double() for p in init_mlp(LAYERS, gen)]
    init = [10 * p for p in init]  # e^-3 is too small to learn in 6 steps
    batches = batch_schedule(x.size(0), 20, steps, gen)
    hyper = (torch.full((4, ), -1.0, dtype=torch.double, requires_grad=True),
             torch.full((4, ), 0.5, dtype=torch.double, requires_grad=True))
    return cfg, hyper, init, batches, x, y


def test_batch_schedule_reshuffles_each_epoch() -> None:
    gen = torch.Generator().manual_seed(0)
    batches = batch_schedule(10, 4, 5, gen)
    assert [len(b) for b in batches] == [4] * 5
    # 2 batches per epoch (a short third dropped): each epoch's pair is
    # disjoint
    assert not set(batches[0].tolist()) & set(batches[1].tolist())
    with pytest.raises(ValueError, match="'batch_size' must be in"):
        batch_schedule(10, 11, 1, gen)


@pytest.mark.parametrize("layers", [(12, 3), (12, 8, 3), (12, 8, 5, 3)])
def test_hand_written_gradient_is_autograds(layers) -> None:
    gen = torch.Generator().manual_seed(3)
    x, y = _data()
    params = [3 * p.double() for p in init_mlp(layers, gen)]
    with torch.no_grad():
        loss, grads = mlp_loss_and_grad(params, x, y)
    leaves = [p.clone().requires_grad_(True) for p in params]
    again, _ = mlp_loss_and_grad(leaves, x, y)  # grad mode on: no graph
    assert not again.requires_grad and float(again) == float(loss)
    ref = mlp_loss(leaves, x, y)
    ref_grads = torch.autograd.grad(ref, leaves)
    assert abs(float(loss) - float(ref)) < 1e-12
    assert float(loss) > 0.1  # not a trivially zero gradient
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape
        assert float(r.abs().max()) > 1e-4
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_no_grad_step_equals_the_recorded_step() -> None:
    """The unrecorded inner step (hand-written gradient, fused update) is
    the recorded one, numbers and losses."""
    _, hyper, init, batches, x, y = _setup("bptt")
    state = tuple([p.clone() for p in init] +
                  [0.1 * torch.ones_like(p) for p in init])
    runs = []
    for grad in (False, True):
        step = SGDMomentumStep(x, y, *hyper, batches, last_full=True)
        # weights with a graph take the autograd path (as BPTT's steps)
        start = tuple(t.clone().requires_grad_(grad) for t in state)
        with torch.set_grad_enabled(grad):
            out = step(step(start))  # a mini-batch step, then the full one
        runs.append(([t.detach() for t in out], step.losses))
    (fast, fast_losses), (slow, slow_losses) = runs
    assert len(fast_losses) == 2 and fast_losses == pytest.approx(
        slow_losses, rel=1e-12)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert any(float((a - s).abs().max()) > 1e-3
               for a, s in zip(fast, state))  # the step moved the state


@pytest.mark.parametrize("layers", [(12, 3), (12, 8, 3), (12, 8, 5, 3)])
def test_hand_written_hessian_vector_product_is_autograds(layers) -> None:
    """mlp_hvp against autograd's double backward, at weights where the
    tanh curvature matters (3x the initial scale)."""
    gen = torch.Generator().manual_seed(4)
    x, y = _data()
    params = [30 * p.double() for p in init_mlp(layers, gen)]
    vs = [torch.randn(p.shape, generator=gen, dtype=torch.double)
          for p in params]
    leaves = [p.clone().requires_grad_(True) for p in params]
    grads = torch.autograd.grad(mlp_loss(leaves, x, y), leaves,
                                create_graph=True)
    ref = torch.autograd.grad(grads, leaves, vs)
    product = mlp_hvp(params, x, y)
    for _ in range(2):  # the cached passes serve every product alike
        got = product(vs)
        for g, r in zip(got, ref):
            assert g.shape == r.shape and float(r.abs().max()) > 1e-4
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="one per parameter"):
        product(vs[:-1])


def test_step_vjp_is_autograds_through_the_step() -> None:
    """SGDMomentumStep.vjp_at (Hessian by hand) is the transposed Jacobian
    autograd gives through the recorded step, on a mini-batch and on the
    whole set; it refuses to run before the step has."""
    _, _, init, batches, x, y = _setup("bptt")
    # a rate and a momentum of their own per tensor: the curvature term
    # weights each tensor's direction before the product, not after
    hyper = (torch.tensor([-1.0, -0.5, -1.5, -2.0], dtype=torch.double),
             torch.tensor([0.5, -1.0, 1.0, 0.0], dtype=torch.double))
    step = SGDMomentumStep(x, y, *hyper, batches[:2], last_full=True)
    with pytest.raises(RuntimeError, match="not been called yet"):
        step.vjp_at(init)
    gen = torch.Generator().manual_seed(5)
    state = [3 * p.clone() for p in init] + \
        [0.1 * torch.randn(p.shape, generator=gen, dtype=torch.double)
         for p in init]
    cot = [torch.randn(p.shape, generator=gen, dtype=torch.double)
           for p in state]
    for _ in range(2):  # the mini-batch step, then the whole-set one
        leaves = [t.clone().requires_grad_(True) for t in state]
        out = step(leaves)
        ref = torch.autograd.grad(out, leaves, cot)
        got = step.vjp_at(state)(cot)
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    step.release()
    with pytest.raises(RuntimeError, match="not been called yet"):
        step.vjp_at(state)


@pytest.mark.parametrize("method", [Neumann(steps=6, tol=0.0),
                                    FixedPoint(steps=6, tol=0.0),
                                    CG(steps=6, tol=0.0)])
def test_closed_form_products_give_the_autograd_hypergradient(method
                                                               ) -> None:
    """The RBP hypergradient with the step's own products equals the one by
    autograd through the recorded step (the same step behind a lambda,
    which offers no vjp_at); without CG's double-vjp the recorded step then
    holds no graph of the gradient, so autograd saves less."""
    _, hyper, init, batches, x, y = _setup("neumann")
    runs = []
    for wrapped in (False, True):
        torch.manual_seed(0)  # FixedPoint's random start
        step = SGDMomentumStep(x, y, *hyper, batches, last_full=True)
        f = (lambda s: step(s)) if wrapped else step
        state = tuple([p.clone() for p in init] +
                      [torch.zeros_like(p) for p in init])
        with SavedTensorMeter(track_peak=True) as meter:
            out, stats = rbp(f, state, method=method, max_iter=6, tol=0.0)
            loss = mlp_loss(list(out[:len(init)]), x, y)
            grads = torch.autograd.grad(loss, hyper)
        assert stats.backward_steps > 0
        runs.append((torch.cat(grads), meter.peak_bytes))
    (own, own_bytes), (auto, auto_bytes) = runs
    assert float(own.abs().max()) > 1e-6
    torch.testing.assert_close(own, auto, rtol=1e-9, atol=1e-12)
    if not method.uses_jvp:
        assert own_bytes < auto_bytes


@pytest.mark.slow
def test_bptt_hypergradient_matches_finite_differences() -> None:
    cfg, hyper, init, batches, x, y = _setup("bptt")
    loss, grads, step, _ = hypergradient(cfg, cfg.gradient(), hyper, init,
                                         batches, x, y)
    assert len(step.losses) == 6 and step.losses[-1] < step.losses[0]
    eps = 1e-6
    for which in (0, 1):
        for i in range(4):
            vals = []
            for sign in (1, -1):
                with torch.no_grad():
                    hyper[which][i] += sign * eps
                l, _, _, _ = hypergradient(cfg, cfg.gradient(), hyper, init,
                                           batches, x, y)
                with torch.no_grad():
                    hyper[which][i] -= sign * eps
                vals.append(float(l))
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert abs(fd - float(grads[which][i])) < 1e-6 * max(1, abs(fd))


def test_tbptt_over_all_steps_is_bptt_and_neumann_is_close() -> None:
    cfg, hyper, init, batches, x, y = _setup("bptt")
    _, bptt, _, _ = hypergradient(cfg, cfg.gradient(), hyper, init, batches,
                                  x, y)
    cfg_t = HyperoptConfig(method="tbptt", truncation=6, inner_steps=6,
                           layers=LAYERS, batch_size=20)
    _, tbptt, _, _ = hypergradient(cfg_t, cfg_t.gradient(), hyper, init,
                                   batches, x, y)
    for a, b in zip(bptt, tbptt):
        torch.testing.assert_close(a, b)
    cfg_n = HyperoptConfig(method="neumann", truncation=6, inner_steps=6,
                           layers=LAYERS, batch_size=20, final_batch="mini")
    _, neumann, _, _ = hypergradient(cfg_n, cfg_n.gradient(), hyper, init,
                                     batches, x, y)
    u = torch.cat([g.reshape(-1) for g in neumann])
    v = torch.cat([g.reshape(-1) for g in bptt])
    assert float(u @ v / (u.norm() * v.norm())) > 0.5  # an approximation


def test_one_meta_step_in_seconds() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(120, LAYERS[0], generator=gen)
    labels = torch.randint(0, 3, (120, ), generator=gen)
    cfg = HyperoptConfig(method="neumann", truncation=3, meta_steps=2,
                         inner_steps=5, batch_size=20, layers=LAYERS)
    result = meta_train(cfg, images, labels, train=80, compare=True)
    assert len(result.records) == 2 and len(result.inner_losses) == 5
    first, second = result.records
    assert -1 <= first.cosine_bptt <= 1
    assert first.log_lr != second.log_lr  # Adam moved the hyperparameters
    assert first.saved_bytes > 0 and first.heldout_loss > 0
    sparse = meta_train(dataclasses.replace(cfg, meta_steps=4), images,
                        labels, train=80, compare=True, compare_every=2)
    # the first, every second and the last meta-step: same hypergradients
    assert [r.cosine_bptt is not None for r in sparse.records] == [
        True, False, True, True]
    assert sparse.records[0].cosine_bptt == first.cosine_bptt
    assert sparse.records[1].log_lr == second.log_lr
    with pytest.raises(ValueError, match="'compare_every' must be >= 1"):
        meta_train(cfg, images, labels, train=80, compare_every=0)
    with pytest.raises(ValueError, match="'truncation' must be at most"):
        HyperoptConfig(truncation=200).check()
    with pytest.raises(ValueError, match="'method' must be one of"):
        HyperoptConfig(method="cg").check()


@pytest.mark.slow
@pytest.mark.skipif(shared_data_root() is None
                    or not (shared_data_root() / "MNIST" / "raw").is_dir(),
                    reason="../shared/data/MNIST not found")
def test_example_writes_json_and_plots(tmp_path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hyperopt.py"),
         "--method", "bptt", "neumann", "--truncation", "2",
         "--meta-steps", "2", "--inner-steps", "3", "--train", "400",
         "--batch-size", "100", "--compare",
         "--data-root", str(shared_data_root()),
         "--output-json", str(out), "--plot", str(tmp_path / "img")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())["results"]
    assert set(result) == {"bptt_s1234", "neumann_K2_s1234"}
    assert len(result["neumann_K2_s1234"]["records"]) == 2
    assert result["neumann_K2_s1234"]["records"][0]["cosine_bptt"] is not None
    assert "| Neumann-RBP | 2 | 1 |" in proc.stdout  # the summary over seeds
    for name in ("hyperopt_losses.png", "hyperopt_hyperparameters.png",
                 "hyperopt_seeds.png"):
        assert (tmp_path / "img" / name).read_bytes()[:4] == b"\x89PNG"
    # several truncations and seeds, resumable: BPTT once per seed; a second
    # run reads every result back instead of training
    args = [sys.executable, str(ROOT / "examples" / "hyperopt.py"),
            "--method", "bptt", "neumann", "--truncation", "1", "2",
            "--seed", "1", "2", "--meta-steps", "1", "--inner-steps", "3",
            "--train", "400", "--batch-size", "100",
            "--data-root", str(shared_data_root()),
            "--resume-dir", str(tmp_path / "runs"),
            "--output-json", str(out)]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    runs = json.loads(out.read_text())["results"]
    assert set(runs) == {"bptt_s1", "bptt_s2", "neumann_K1_s1",
                         "neumann_K1_s2", "neumann_K2_s1", "neumann_K2_s2"}
    assert runs["neumann_K2_s2"]["config"]["truncation"] == 2
    assert len(list((tmp_path / "runs").glob("*.json"))) == 6
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("read from") == 6
    assert json.loads(out.read_text())["results"] == runs
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hyperopt.py"),
         "--data-root", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "MNIST: 2 raw file(s) missing" in \
        proc.stderr and "--data-root" in proc.stderr
    assert not (tmp_path / "nowhere").exists()
