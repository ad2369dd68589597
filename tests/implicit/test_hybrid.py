"""The hybrid method (the layers' default) and the reports of a forward or
adjoint that misses its tolerance, against exact oracles: BPTT through the
same steps where the forward did not converge, a dense solve of the adjoint
system where it did."""
from __future__ import annotations

import warnings
from typing import Callable, List, Tuple

import pytest
import torch
from torch import Tensor

from pyg_rbp import (BPTT, ConvergenceMonitor, ConvergenceWarning, Hybrid,
                     Neumann, RBPGatedGraphConv, rbp)
from pyg_rbp.implicit.problem import unrolled_bytes as _unrolled_bytes

EDGES = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2], [1, 2, 3, 4, 5, 0, 3, 5]])


def _tanh_map(scale: float, n: int = 6, d: int = 3, seed: int = 0,
              x_scale: float = 1.0
              ) -> Tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
    """``h -> tanh(W h + x)`` with ``||W|| = scale`` (double precision)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, n, generator=gen, dtype=torch.double)
    w = (scale * w / torch.linalg.matrix_norm(w, 2)).requires_grad_(True)
    x = (x_scale * torch.randn(n, d, generator=gen, dtype=torch.double)
         ).requires_grad_(True)
    return w, x, lambda h: torch.tanh(w @ h + x)


def _grads(method, scale: float, max_iter: int, tol: float
           ) -> Tuple[List[Tensor], object]:
    w, x, f = _tanh_map(scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        h, stats = rbp(f, torch.zeros_like(x), method=method,
                       max_iter=max_iter, tol=tol)
        grads = torch.autograd.grad(h.pow(2).sum(), [w, x])
    return list(grads), stats


def test_unconverged_call_takes_bptts_gradient_exactly() -> None:
    # 0.99-contraction, 3 steps: far from the fixed point
    hybrid, s = _grads(Hybrid(), 0.99, 3, 1e-10)
    bptt, _ = _grads(BPTT(), 0.99, 3, 1e-10)
    assert s.backward_method == "bptt" and not s.converged
    assert s.method == "hybrid" and s.backward_steps == 3 and s.unrolled
    for a, b in zip(hybrid, bptt):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # ... where Neumann-RBP's implicit gradient at that state is wrong
    neumann, _ = _grads(Neumann(steps=500, tol=1e-14), 0.99, 3, 1e-10)
    assert float((neumann[0] - bptt[0]).norm() / bptt[0].norm()) > 1e-2


def test_converged_call_solves_the_adjoint_against_a_dense_solve() -> None:
    w, x, f = _tanh_map(0.97, x_scale=0.1)
    h, stats = rbp(f, torch.zeros_like(x), method="hybrid", max_iter=1000,
                   tol=1e-13)
    grads = torch.autograd.grad(h.pow(2).sum(), [w, x])
    assert stats.converged and stats.backward_method == "neumann"
    assert stats.backward_converged is True
    # the cap rose from 20 to 2 * max_iter: 20 terms would not do at 0.9
    assert 20 < stats.backward_steps <= 2000
    # oracle: z = (I - J^T)^-1 g by a dense solve at the fixed point
    hs = h.detach()
    pre = w.detach() @ hs + x.detach()
    d = 1 - torch.tanh(pre).pow(2)  # [n, d]
    n, c = hs.shape
    jac = torch.zeros(n * c, n * c, dtype=torch.double)
    for i in range(n):  # h[i, k] depends on h[j, k] through w[i, j]
        for j in range(n):
            for k in range(c):
                jac[i * c + k, j * c + k] = d[i, k] * w.detach()[i, j]
    g = (2 * hs).reshape(-1)
    z = torch.linalg.solve(torch.eye(n * c, dtype=torch.double) - jac.T, g)
    zw = (z.reshape(n, c) * d)  # through tanh
    exact_w = zw @ hs.T
    exact_x = zw
    for got, exact in ((grads[0], exact_w), (grads[1], exact_x)):
        # the adjoint's tolerance is 1e-6 relative to ||g||
        assert float((got - exact).norm() / exact.norm()) < 1e-5


def test_over_budget_uses_the_implicit_gradient_and_says_so() -> None:
    w, x, f = _tanh_map(0.99)
    monitor = ConvergenceMonitor(owner="T")
    with pytest.warns(ConvergenceWarning, match="did not fit the memory"):
        h, stats = rbp(f, torch.zeros_like(x),
                       method=Hybrid(memory_budget=0), max_iter=8, tol=1e-10,
                       monitor=monitor)
    assert stats.backward_method == "neumann" and not stats.converged
    assert monitor.unrolled == 0 and monitor.calls == 1


@pytest.mark.parametrize("cell, adjoint", [("contractive", "anderson"),
                                           ("gru", "neumann")])
def test_memory_is_one_step_when_the_forward_converges(cell: str,
                                                       adjoint: str) -> None:
    from pyg_rbp.utils import SavedTensorMeter
    torch.manual_seed(0)
    x = torch.randn(30, 8)
    edge_index = torch.randint(0, 30, (2, 90))

    def saved(steps: int) -> Tuple[int, str]:
        torch.manual_seed(1)
        conv = RBPGatedGraphConv(8, num_layers=steps, cell=cell)
        with SavedTensorMeter() as meter:
            conv(x, edge_index)
        return meter.bytes, conv.stats.backward_method

    assert saved(200) == saved(1000)
    assert saved(200)[1] == adjoint


@pytest.mark.parametrize("cell", ["contractive", "gru"])
@pytest.mark.parametrize("solver", ["fixed_point", "anderson", "broyden"])
def test_unrolled_memory_estimate_matches_the_unrolled_run(
        cell: str, solver: str) -> None:
    torch.manual_seed(0)
    x, edge_index = torch.randn(50, 16), torch.randint(0, 50, (2, 200))
    conv = RBPGatedGraphConv(16, num_layers=40, tol=0.0, method="bptt",
                             cell=cell, solver=solver)
    storages = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        conv(x, edge_index)
    step, h0 = conv.fixed_point_map(x, edge_index)
    estimate = _unrolled_bytes(step, h0, 40, solver)
    assert abs(estimate - sum(storages.values())) <= \
        0.05 * sum(storages.values())


@pytest.mark.slow
def test_six_node_gradcheck_passes_at_the_default_method() -> None:
    """The adjoint at the old default (Neumann, 20 terms) stopped at a
    relative residual of 7e-3 and gradcheck failed; the default now solves
    it to its tolerance."""
    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.double, requires_grad=True)

    def check(method) -> bool:
        torch.manual_seed(0)
        conv = RBPGatedGraphConv(4, num_layers=500, tol=1e-12,
                                 method=method).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return torch.autograd.gradcheck(lambda x: conv(x, EDGES), (x, ),
                                            raise_exception=False)
    assert check("hybrid")
    assert not check("neumann")  # the old default: 20 terms fall short


def test_adjoint_miss_is_flagged_counted_and_warned_once() -> None:
    w, x, f = _tanh_map(0.95)
    monitor = ConvergenceMonitor(owner="MyLayer")
    caught = []
    for _ in range(3):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            h, stats = rbp(f, torch.zeros_like(x), max_iter=1000, tol=1e-12,
                           method=Neumann(steps=3, tol=1e-6),
                           monitor=monitor)
            h.sum().backward()
        caught += [str(r.message) for r in record
                   if issubclass(r.category, ConvergenceWarning)]
    assert stats.backward_converged is False
    assert stats.backward_residual > 1e-6
    assert len(caught) == 1 and caught[0].startswith("MyLayer: the 'neumann'"
                                                     " adjoint solve stopped")
    assert "Raise 'backward_steps'" in caught[0]
    assert (monitor.calls, monitor.forward_converged) == (3, 3)
    assert (monitor.adjoint_calls, monitor.adjoint_solved) == (3, 0)
    assert monitor.shares()["adjoint_solved"] == 0.0
    # tol=0 asks for exactly `steps` terms: not judged, never warned
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        h, stats = rbp(f, torch.zeros_like(x), max_iter=1000, tol=1e-12,
                       method=Neumann(steps=3, tol=0))
        h.sum().backward()
    assert stats.backward_converged is None


def test_layer_warns_once_per_instance_and_counts_calls() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4)
    conv = RBPGatedGraphConv(4, num_layers=3, tol=1e-12)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(4):
            conv(x, EDGES).sum().backward()
    texts = [str(r.message) for r in record
             if issubclass(r.category, ConvergenceWarning)]
    assert len(texts) == 1 and texts[0].startswith("RBPGatedGraphConv: ")
    assert "tol=1e-12 within 3 steps" in texts[0]
    assert record[0].filename == __file__  # the user's line, not ours
    assert conv.monitor.shares() == {"forward_converged": 0.0,
                                     "adjoint_solved": float("nan"),
                                     "unrolled": 1.0} or \
        conv.monitor.unrolled == conv.monitor.calls == 4
    other = RBPGatedGraphConv(4, num_layers=3, tol=1e-12)
    with pytest.warns(ConvergenceWarning):  # its own instance warns again
        other(x, EDGES)


def test_bad_hybrid_settings_are_refused() -> None:
    with pytest.raises(TypeError, match="'adjoint' must be an implicit"):
        Hybrid(adjoint=BPTT())
    with pytest.raises(TypeError, match="'adjoint' must be an implicit"):
        Hybrid(adjoint="neumann")
    with pytest.raises(ValueError, match="'memory_budget' must be >= 0"):
        Hybrid(memory_budget=-1)
    with pytest.raises(ValueError, match="'backward_steps' / 'backward_tol'"):
        rbp(lambda h: h * 0.5, torch.ones(2), method=Hybrid(),
            backward_steps=3)


def test_after_an_unrolled_call_the_next_records_from_the_start() -> None:
    w, x, f0 = _tanh_map(0.99)
    calls = [0]

    def f(h: Tensor) -> Tensor:
        calls[0] += 1
        return f0(h)
    monitor = ConvergenceMonitor()
    counts, grads = [], []
    for predict in (True, True, False):
        calls[0] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            h, stats = rbp(f, torch.zeros_like(x), max_iter=5, tol=1e-10,
                           method=Hybrid(predict=predict), monitor=monitor)
        grads.append(torch.autograd.grad(h.sum(), [w])[0])
        counts.append(calls[0])
        assert stats.backward_method == "bptt"
    # 4 no-grad + 2 probe + 5 recorded; then 5 recorded; without predict
    # the no-grad pass runs again
    assert counts == [11, 5, 11]
    for g in grads[1:]:
        torch.testing.assert_close(g, grads[0], rtol=1e-12, atol=1e-12)
    # a converged call clears the prediction
    rbp(f, torch.zeros_like(x), max_iter=2000, tol=1e-8, method=Hybrid(),
        monitor=monitor)
    assert monitor.unrolled_rate is None


@pytest.mark.parametrize("method, unrolled", [
    ("bptt", True), ("tbptt", True), ("phantom", True), ("neumann", False),
    ("cg", False), ("hybrid", False)])
def test_the_stats_say_whether_the_gradient_was_unrolled(
        method: str, unrolled: bool) -> None:
    """``stats.unrolled``: the gradient back-propagates through recorded
    steps (the monitor's and the Lightning logs' count) or solves the
    adjoint; the hybrid that converged solved it."""
    _, stats = _grads(method, 0.5, 200, 1e-10)
    assert stats.converged and stats.unrolled is unrolled
    monitor = ConvergenceMonitor()
    w, x, f = _tanh_map(0.5)
    rbp(f, torch.zeros_like(x), method=method, max_iter=200, tol=1e-10,
        monitor=monitor)
    assert (monitor.calls, monitor.unrolled) == (1, int(unrolled))
