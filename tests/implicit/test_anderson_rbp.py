"""Anderson-RBP against a dense solve: where rho(J) is close to 1 it meets
the tolerance in a fraction of the Neumann series' terms."""
from __future__ import annotations

import pytest
import torch

from pyg_rbp import AndersonRBP, Hybrid, Neumann, RBPGatedGraphConv, rbp
from pyg_rbp.implicit import METHODS, resolve_method
from pyg_rbp.implicit.adjoint import anderson, neumann


def _system(rho: float, n: int = 40, seed: int = 0):
    """A contraction J with spectral radius ``rho`` (a damped random
    orthogonal matrix plus a smaller random part), and g."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.double)
    jac = a * (rho / torch.linalg.eigvals(a).abs().max())
    g = torch.randn(n, generator=gen, dtype=torch.double)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.double) - jac.T, g)
    return jac, g, exact


@pytest.mark.parametrize("rho", [0.5, 0.95, 0.99])
def test_anderson_matches_a_dense_solve(rho: float) -> None:
    jac, g, exact = _system(rho)
    result = anderson(lambda v: jac.T @ v, g, 300, 1e-11)
    assert not result.diverged and result.residual < 1e-11
    torch.testing.assert_close(result.z, exact, rtol=1e-9, atol=1e-10)
    # the residual it reports is that of the returned z, or smaller
    true = float((g + jac.T @ result.z - result.z).norm() / g.norm())
    assert true <= result.residual


def test_fewer_products_than_the_series_near_one() -> None:
    jac, g, _ = _system(0.99)
    fast = anderson(lambda v: jac.T @ v, g, 500, 1e-8)
    slow = neumann(lambda v: jac.T @ v, g, 5000, 1e-8)
    assert fast.residual < 1e-8 and slow.residual < 1e-8
    assert fast.steps * 5 < slow.steps


def test_zero_and_non_finite_gradients_pass_through() -> None:
    jac, _, _ = _system(0.5)
    zero = anderson(lambda v: jac.T @ v, torch.zeros(40, dtype=torch.double),
                    10, 1e-9)
    assert zero.steps == 0 and float(zero.z.abs().sum()) == 0
    inf = torch.full((40, ), float("inf"), dtype=torch.double)
    out = anderson(lambda v: jac.T @ v, inf, 10, 1e-9)
    assert not out.diverged and torch.isinf(out.z).all()


def test_through_rbp_the_registry_and_the_hybrid() -> None:
    assert "anderson" in METHODS
    assert resolve_method("anderson", 9, 1e-4) == AndersonRBP(steps=9,
                                                                tol=1e-4)
    torch.manual_seed(0)
    w = (0.3 * torch.randn(5, 5, dtype=torch.double)).requires_grad_(True)
    x = torch.randn(5, 2, dtype=torch.double)

    def grads(method, **kw):
        h, stats = rbp(lambda h: torch.tanh(w @ h + x), torch.zeros_like(x),
                       method=method, max_iter=500, tol=1e-13, **kw)
        return torch.autograd.grad(h.pow(2).sum(), w)[0], stats
    want, _ = grads(Neumann(steps=500, tol=1e-15))
    for method, kw in ((AndersonRBP(steps=40, tol=1e-12), {}),
                       ("anderson", dict(backward_tol=1e-12, backward_steps=100)),
                       (Hybrid(adjoint=AndersonRBP(tol=1e-12)), {})):
        got, stats = grads(method, **kw)
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)
        assert stats.backward_converged
        assert stats.backward_method == "anderson"
    with pytest.raises(ValueError, match="'memory' must be >= 1"):
        AndersonRBP(memory=0)


def test_the_contractive_layer_solves_its_adjoint_with_it() -> None:
    """method='hybrid' by name: Anderson-RBP for the contractive step (its
    carry puts rho(J) near the gate's 0.9-0.95), Neumann-RBP for the GRU;
    a method given by value is used as given."""
    torch.manual_seed(0)
    x, edge_index = torch.randn(40, 8), torch.randint(0, 40, (2, 160))
    counts = {}
    for cell in ("contractive", "gru"):
        conv = RBPGatedGraphConv(8, cell=cell, normalize=True)
        conv(x, edge_index).pow(2).sum().backward()
        assert conv.stats.backward_converged
        counts[cell] = conv.stats.backward_method
    assert counts == {"contractive": "anderson", "gru": "neumann"}
    conv = RBPGatedGraphConv(8, method=Hybrid(adjoint=Neumann(steps=400)))
    conv(x, edge_index).pow(2).sum().backward()
    assert conv.stats.backward_method == "neumann"


def _batched_map(seed: int = 0):
    """A contraction on three graphs of different sizes (block-diagonal)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [3, 5, 8]
    batch = torch.cat([torch.full((n, ), i) for i, n in enumerate(sizes)])
    n = batch.numel()
    a = torch.rand(n, n, generator=gen, dtype=torch.double)
    a = a * (batch[:, None] == batch[None, :])  # no edge between graphs
    a = 0.9 * a / a.sum(1, keepdim=True)
    w = torch.randn(4, 4, generator=gen, dtype=torch.double) * 0.3
    x = torch.randn(n, 4, generator=gen, dtype=torch.double)

    def f(h):
        return torch.tanh(a @ h @ w + x) * 0.5 + 0.5 * (a @ h)
    return f, x, batch


def test_per_graph_mixing_does_not_depend_on_the_batch() -> None:
    """With batch, Anderson mixes each graph with weights of its own: a
    graph's state in the batch is the one it gets alone."""
    f, x, batch = _batched_map()
    with torch.no_grad():
        h, stats = rbp(f, torch.zeros_like(x), max_iter=200, tol=1e-10,
                       solver="anderson", batch=batch)
        for g in range(3):
            rows = (batch == g).nonzero().view(-1)

            def alone(v, rows=rows):
                full = torch.zeros_like(x)
                full[rows] = v
                return f(full)[rows]
            h_g, s_g = rbp(alone, torch.zeros_like(x[rows]), max_iter=200,
                           tol=1e-10, solver="anderson")
            torch.testing.assert_close(h[rows], h_g, rtol=0, atol=1e-12)
            # the graph stopped at the same step (alone, the count
            # includes rbp's final step after the loop)
            assert int(stats.graph_steps[g]) == s_g.forward_steps - 1


def test_recorded_mixing_takes_the_same_steps() -> None:
    """BPTT through Anderson (grad on: the stacked history) and the no-grad
    ring buffers give the same iterates, with and without batch."""
    from pyg_rbp.implicit.forward import iterate
    f, x, batch = _batched_map(1)
    for groups in (batch, None):
        num = 3 if groups is not None else 1
        with torch.no_grad():
            fast = iterate(f, torch.zeros_like(x), 40, 0.0, "anderson",
                           groups, num)
        h0 = torch.zeros_like(x).requires_grad_(True)
        recorded = iterate(f, h0, 40, 0.0, "anderson", groups, num)
        assert recorded.h.grad_fn is not None
        torch.testing.assert_close(recorded.h.detach(), fast.h, rtol=0,
                                   atol=1e-12)


@pytest.mark.slow
def test_the_adjoints_ridge_keeps_the_mixing_a_krylov_method() -> None:
    """The adjoint is linear, so its ridge (relative to the window's largest
    squared residual) only guards a singular small solve. The forward
    solver's 1e-4 is large beside a window whose residuals span a few
    orders of magnitude and turned the mixing into near plain iteration on
    the quick start's trained layer (107 products against 30). Here: the
    quick start's model trained 50 epochs, then in float64 the default
    needs under half the products of lam=1e-4, and its gradient is that of
    GMRES solved to 1e-11."""
    import torch.nn.functional as F

    from pyg_rbp import GMRES
    from benchmarks import harness
    qs = harness.example("quickstart")
    x, edge_index, y, train, _ = qs.make_data(0)
    torch.manual_seed(0)
    model = qs.Net(16, 32, 4, RBPGatedGraphConv(32, num_layers=100,
                                                normalize=True))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    for _ in range(50):
        opt.zero_grad()
        F.cross_entropy(model(x, edge_index)[train], y[train]).backward()
        opt.step()
    model.double()
    x = x.double()
    model.conv.tol = 1e-10

    def solve(method):
        model.conv.method = method
        model.zero_grad()
        F.cross_entropy(model(x, edge_index)[train], y[train]).backward()
        assert model.conv.stats.backward_converged
        return (model.conv.stats.backward_steps,
                [p.grad.clone() for p in model.parameters()])

    steps, grads = solve(AndersonRBP(steps=1000, tol=1e-8))
    ridged, _ = solve(AndersonRBP(steps=1000, tol=1e-8, lam=1e-4))
    _, exact = solve(GMRES(steps=300, tol=1e-11))
    assert 2 * steps < ridged
    for a, b in zip(grads, exact):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert AndersonRBP().lam == 1e-8
    with pytest.raises(ValueError, match="'lam' must be a finite number"):
        AndersonRBP(lam=-1.0)
