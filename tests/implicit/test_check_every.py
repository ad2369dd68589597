"""Reading the residuals on the host once per block of steps (what a GPU
needs to queue steps without waiting) must not change anything: the state,
the steps, the trace and the per-graph fields are those of reading after
every step. Checked on the CPU, where both are possible."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from pyg_rbp import FixedPointIteration, RBPGatedGraphConv, rbp
from pyg_rbp.implicit.forward import (DEVICE_CHECK_EVERY, check_interval,
                                      iterate)


def _contraction(n: int, c: int, rho: float, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(c, c, generator=gen, dtype=torch.float64)
    w = rho * w / torch.linalg.matrix_norm(w, 2)
    b = torch.randn(n, c, generator=gen, dtype=torch.float64)

    class Map(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(w)
            self.b = torch.nn.Parameter(b)

        def forward(self, h: Tensor) -> Tensor:
            return torch.tanh(h @ self.w + self.b)
    return Map()


def _same(a, b) -> None:
    assert torch.equal(a.h, b.h)
    assert a.steps == b.steps
    assert a.trace == b.trace
    assert torch.equal(a.done, b.done)
    assert torch.equal(a.graph_steps, b.graph_steps)
    assert torch.equal(a.graph_residual, b.graph_residual)
    assert a.nonfinite == b.nonfinite


@pytest.mark.parametrize("every", [2, 3, 8, 100])
@pytest.mark.parametrize("tol", [0.0, 1e-9, 1e-3])
def test_one_state_no_change(every: int, tol: float) -> None:
    f = _contraction(7, 5, 0.6, 0)
    h0 = torch.zeros(7, 5, dtype=torch.float64)
    with torch.no_grad():
        ref = iterate(f, h0, 40, tol, "fixed_point", None, 1, 1)
        got = iterate(f, h0, 40, tol, "fixed_point", None, 1, every)
    _same(got, ref)
    if tol > 0:  # it converged before the budget: the blocks ran on
        assert ref.steps < 40 and ref.evaluations == ref.steps
        assert ref.steps <= got.evaluations < ref.steps + every
        assert got.evaluations == min(40, math.ceil(ref.steps / every)
                                      * every)


def _graphs() -> Batch:
    gen = torch.Generator().manual_seed(3)
    data = []
    for i in range(12):
        n = 3 + (i * 7) % 11
        ei = torch.randint(0, n, (2, 3 * n), generator=gen)
        data.append(Data(x=torch.randn(n, 6, generator=gen), edge_index=ei))
    return Batch.from_data_list(data)


@pytest.mark.parametrize("every", [2, 5, 16])
@pytest.mark.parametrize("compact", [True, False])
def test_per_graph_stopping_no_change(every: int,
                                      compact: bool) -> None:
    """Graphs converge at different steps (and with compaction leave the
    computation); the result must not depend on when the host looks."""
    solver = FixedPointIteration(compact_share=0.5 if compact else 0.0)
    b = _graphs()
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(8, num_layers=60, tol=1e-7, cell="gru").double()
    x = b.x.double()
    step, h0 = conv.fixed_point_map(x, b.edge_index)
    out = {}
    for e in (1, every):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            out[e] = rbp(step, h0, max_iter=60, tol=1e-7, batch=b.batch,
                         check_every=e, solver=solver)
    (h1, s1), (h2, s2) = out[1], out[every]
    assert torch.equal(h1, h2)
    assert s1.forward_steps == s2.forward_steps
    assert s1.residual_trace == s2.residual_trace
    assert torch.equal(s1.graph_steps, s2.graph_steps)
    assert torch.equal(s1.graph_residual, s2.graph_residual)
    # the graphs did stop at different steps, so freezing was exercised
    assert s1.graph_steps.unique().numel() > 3


def test_gradients_unchanged() -> None:
    f = _contraction(6, 4, 0.7, 1)
    h0 = torch.zeros(6, 4, dtype=torch.float64)
    grads = []
    for every in (1, 4):
        f.zero_grad()
        h, stats = rbp(f, h0, tol=1e-10, max_iter=200, check_every=every)
        h.pow(2).sum().backward()
        grads.append((f.w.grad.clone(), stats.forward_steps))
    assert grads[0][1] == grads[1][1]
    assert torch.equal(grads[0][0], grads[1][0])


def test_nonfinite_found_at_the_same_step() -> None:
    def f(h: Tensor) -> Tensor:  # blows up after a few doublings
        return h * 1e80 + 1
    h0 = torch.ones(3, dtype=torch.float64)
    with torch.no_grad():
        ref = iterate(f, h0, 30, 1e-6, "fixed_point", None, 1, 1)
        got = iterate(f, h0, 30, 1e-6, "fixed_point", None, 1, 8)
    assert ref.nonfinite and got.nonfinite
    assert got.steps == ref.steps
    assert got.trace == ref.trace
    assert not bool(torch.isfinite(got.h).all())


def test_defaults_and_bad_values() -> None:
    assert check_interval(torch.device("cpu")) == 1
    assert check_interval(torch.device("meta")) == DEVICE_CHECK_EVERY
    assert check_interval(torch.device("meta"), 3) == 3
    f = _contraction(2, 2, 0.5, 2)
    h0 = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="check_every"):
        rbp(f, h0, check_every=0)
    with pytest.raises(TypeError, match="check_every"):
        rbp(f, h0, check_every=2.0)


def _matrix_vjp(rho: float, n: int = 9, seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    a = rho * a / torch.linalg.eigvals(a).abs().max()
    calls = []

    def vjp(v: Tensor) -> Tensor:
        calls.append(1)
        return a.T @ v
    return vjp, calls


@pytest.mark.parametrize("every", [2, 3, 8])
@pytest.mark.parametrize("rho,tol", [(0.5, 1e-6), (0.5, 0.0), (0.9, 1e-3),
                                     (1.5, 1e-6)])
def test_neumann_blocks_no_change(every: int, rho: float, tol: float) -> None:
    from pyg_rbp.implicit.adjoint import neumann
    g = torch.randn(9, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(5))
    vjp, calls = _matrix_vjp(rho)
    ref = neumann(vjp, g, 40, tol, check_every=1)
    per_term = len(calls)
    calls.clear()
    got = neumann(vjp, g, 40, tol, check_every=every)
    assert torch.equal(got.z, ref.z)
    assert (got.steps, got.residual, got.diverged) == \
        (ref.steps, ref.residual, ref.diverged)
    assert ref.diverged == (rho > 1)
    if not ref.diverged:  # at most one block of terms more than needed
        assert per_term <= len(calls) < per_term + every
