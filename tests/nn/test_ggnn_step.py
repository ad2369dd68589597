"""The steps' three evaluations agree: the recorded one (autograd), the
no-grad one (GGNNStep's blocked loop, the contractive step's in-place
arithmetic) and the closed-form transposed Jacobian; for both cells."""
from __future__ import annotations

import pytest
import torch

import pyg_rbp.nn.ggnn_step as ggnn_step
from pyg_rbp import RBPGatedGraphConv
from tests.conftest import random_graph

CONFIGS = {
    "add": dict(aggr="add"),
    "weighted": dict(aggr="add", weighted=True),
    "mean": dict(aggr="mean"),
    "normalize": dict(aggr="add", normalize=True),
    "no-bias": dict(aggr="add", bias=False),
    "max": dict(aggr="max"),
    "typed": dict(aggr="add", num_edge_types=3, weighted=True),
    "typed-mean": dict(aggr="mean", num_edge_types=3),
    "typed-normalize": dict(aggr="add", num_edge_types=3, normalize=True),
    "typed-max": dict(aggr="max", num_edge_types=3),
}


CELLS = ["contractive", "gru"]


def _step(name: str, channels: int = 5, num_nodes: int = 37,
          cell: str = "gru"):
    torch.manual_seed(0)
    cfg = dict(CONFIGS[name])
    weighted = cfg.pop("weighted", False)
    conv = RBPGatedGraphConv(channels, num_layers=3, cell=cell,
                             **cfg).double()
    x = torch.randn(num_nodes, 3, dtype=torch.float64)
    edge_index = random_graph(num_nodes, 120, seed=1)
    weight = torch.rand(120, dtype=torch.float64) if weighted else None
    types = cfg.get("num_edge_types", 1)
    edge_type = torch.arange(120) % types if types > 1 else None
    step, _ = conv.fixed_point_map(x, edge_index, weight, edge_type)
    h = torch.randn(num_nodes, channels, dtype=torch.float64)
    return step, h


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_no_grad_path_equals_recorded_path(name: str, cell: str,
                                           monkeypatch) -> None:
    # Blocks of 8 rows: 37 nodes give four full blocks and a short one.
    monkeypatch.setattr(ggnn_step, "_BLOCK_ELEMENTS", 8 * 5)
    step, h = _step(name, cell=cell)
    with torch.enable_grad():
        recorded = step(h.requires_grad_(True))
    assert recorded.grad_fn is not None
    with torch.no_grad():
        fast = step(h.detach())
    torch.testing.assert_close(fast, recorded.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("block_rows", [None, 8])
@pytest.mark.parametrize("name", [n for n in CONFIGS if "max" not in n])
def test_closed_form_vjp_equals_autograd(name: str, block_rows, cell: str,
                                         monkeypatch) -> None:
    """J^T v in closed form, in one block or in row blocks of 8 (37 nodes:
    four full blocks and a short one), and written over v, equals
    autograd's product through the recorded step."""
    if block_rows is not None:
        monkeypatch.setattr(ggnn_step, "_BLOCK_ELEMENTS", block_rows * 5)
    step, h = _step(name, cell=cell)
    vjp = step.vjp_at(h)
    assert vjp is not None
    h_in = h.clone().requires_grad_(True)
    with torch.enable_grad():
        h_out = step(h_in)
    for seed in range(3):
        v = torch.randn(h.shape, dtype=h.dtype,
                        generator=torch.Generator().manual_seed(seed))
        (expected, ) = torch.autograd.grad(h_out, h_in, v, retain_graph=True)
        before = v.clone()
        torch.testing.assert_close(vjp(v), expected, rtol=0, atol=1e-12)
        assert torch.equal(v, before)  # the plain product leaves v alone
        if not hasattr(vjp, "overwrite"):  # optional (GGNNStep has it)
            continue
        written = vjp.overwrite(v)
        assert written.data_ptr() == v.data_ptr()
        torch.testing.assert_close(written, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name", ["max", "typed-max"])
def test_non_linear_aggregation_has_no_closed_form(name: str,
                                                    cell: str) -> None:
    step, h = _step(name, cell=cell)
    assert step.vjp_at(h) is None  # rbp() then uses autograd


def test_vjp_at_the_recorded_state_reuses_its_gates(monkeypatch) -> None:
    """At the recorded step's input the gates autograd keeps are reused (no
    second evaluation of the step); elsewhere they are recomputed. Both give
    the same product."""
    step, h = _step("typed")
    h_in = h.clone().requires_grad_(True)
    with torch.enable_grad():
        step(h_in)
    calls = {"message": 0}
    real = step._message

    def counting(x):
        calls["message"] += 1
        return real(x)

    monkeypatch.setattr(step, "_message", counting)
    reused = step.vjp_at(h_in)
    assert calls["message"] == 0
    recomputed = step.vjp_at(h_in.detach().clone())
    assert calls["message"] == 1
    v = torch.randn_like(h)
    torch.testing.assert_close(reused(v), recomputed(v), rtol=0, atol=1e-12)
    step.release()
    assert step._gates is None


@pytest.mark.parametrize("method, penalty, guard, keeps", [
    ("neumann", None, None, False), ("fixed_point", None, None, False),
    ("cg", None, None, True), ("neumann", "spectral", None, True),
    ("neumann", None, 0.9, True)])
def test_state_gradient_path_only_when_needed(method, penalty, guard, keeps,
                                             monkeypatch) -> None:
    """With a closed-form J^T v, backward computes no dL/dh* (an unused
    [N, C] gradient through the sparse product); CG's double-vjp, the
    penalty and the contraction safeguard (20 steps do not converge here)
    need the path and keep it."""
    from pyg_rbp.implicit.problem import Problem
    seen = {}
    real = Problem.steps_after

    def spy(self, h, steps, damping=1.0):
        seen["requires_grad"] = h.requires_grad
        return real(self, h, steps, damping)

    torch.manual_seed(0)
    conv = RBPGatedGraphConv(5, num_layers=20, method=method, cell="gru",
                             jacobian_penalty=penalty,
                             contraction_bound=guard)
    x = torch.randn(30, 5)
    monkeypatch.setattr(Problem, "steps_after", spy)
    conv(x, random_graph(30, 90)).sum().backward()
    assert seen["requires_grad"] is keeps
    assert all(p.grad is not None for p in conv.parameters())


@pytest.mark.parametrize("cuda", [False, True])
def test_block_rows_is_positive_for_an_empty_graph(cuda: bool) -> None:
    """range(0, 0, rows) needs rows >= 1: a 0-node graph on CUDA used to
    take rows = num = 0."""
    from pyg_rbp.nn.ggnn_step import _CUDA_ONE_BLOCK, block_rows
    for adjoint in (False, True):
        assert block_rows(0, 16, cuda, adjoint) >= 1
    assert block_rows(1000, 64, True) == 1000  # one block on CUDA
    big = _CUDA_ONE_BLOCK // 64 + 8
    assert block_rows(big, 64, True, adjoint=True) == -(-big // 8)
    assert block_rows(big, 64, True, adjoint=False) == big
    assert block_rows(10 ** 6, 64, False) == 2 ** 17 // 64


def test_empty_graph_backward_with_a_nonzero_gradient() -> None:
    """A batch whose state has no rows still runs the adjoint products."""
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(4, num_layers=5, cell="gru")
    step, h0 = conv.fixed_point_map(torch.zeros(0, 4),
                                    torch.zeros(2, 0, dtype=torch.long))
    with torch.enable_grad():
        h_in = h0.clone().requires_grad_(True)
        step(h_in)
    vjp = step.vjp_at(h_in)
    assert vjp(torch.zeros(0, 4)).shape == (0, 4)
