"""GMRES-RBP against a dense solve, where the Neumann series fails."""
from __future__ import annotations

import torch

from pyg_rbp import GMRES, Neumann, rbp
from pyg_rbp.implicit import METHODS
from pyg_rbp.implicit.adjoint import gmres, neumann


def _system(rho: float, shear: float, n: int = 12, seed: int = 0):
    """J = P diag(rho) P^-1 + a strictly upper-triangular shear: spectral
    radius ``rho``, and transient growth (non-normal) with ``shear``."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen,
                                       dtype=torch.double))
    eig = rho * torch.linspace(-1, 1, n, dtype=torch.double)
    jac = q @ torch.diag(eig) @ q.T + shear * torch.triu(
        torch.randn(n, n, generator=gen, dtype=torch.double), 1)
    g = torch.randn(n, generator=gen, dtype=torch.double)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.double) - jac.T, g)
    return jac, g, exact


def test_gmres_solves_where_neumann_cannot() -> None:
    for rho, shear in ((0.95, 0.0), (0.9, 1.5), (1.3, 0.0)):
        jac, g, exact = _system(rho, shear)
        result = gmres(lambda v: jac.T @ v, g, 12, 1e-12)
        assert not result.diverged and result.residual < 1e-10
        torch.testing.assert_close(result.z, exact, rtol=1e-8, atol=1e-10)
    # the non-normal and the expansive cases defeat a 20-term series
    jac, g, exact = _system(0.9, 1.5)
    assert neumann(lambda v: jac.T @ v, g, 20, 1e-12).residual > 1e-3
    jac, g, exact = _system(1.3, 0.0)
    assert neumann(lambda v: jac.T @ v, g, 20, 1e-12).residual > 1  # grows


def test_gmres_through_rbp_and_the_registry() -> None:
    assert "gmres" in METHODS
    w = (0.3 * torch.randn(5, 5, dtype=torch.double)).requires_grad_(True)
    x = torch.randn(5, 2, dtype=torch.double)

    def grads(method):
        h, stats = rbp(lambda h: torch.tanh(w @ h + x), torch.zeros_like(x),
                       method=method, max_iter=500, tol=1e-13)
        return torch.autograd.grad(h.pow(2).sum(), w)[0], stats
    got, stats = grads(GMRES(steps=10, tol=1e-12))
    want, _ = grads(Neumann(steps=500, tol=1e-15))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
    assert stats.backward_converged and stats.backward_steps <= 10
    by_name, _ = grads("gmres")
    torch.testing.assert_close(by_name, want, rtol=1e-9, atol=1e-11)


def test_gmres_reaches_tol_in_float32_on_a_large_state() -> None:
    """A float32 state of 320k entries (5,000 nodes x 64 channels) with
    rho(J) = 0.995: the residual, measured with the operator itself (not
    GMRES's own estimate), reaches 1e-6 within a few dozen products. One
    pass of modified Gram-Schmidt stalled here near 3e-6 after 150."""
    n, c = 5000, 64
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, n, (5 * n, ), generator=gen)
    dst = torch.randint(0, n, (5 * n, ), generator=gen)
    degree = torch.zeros(n).index_add_(0, dst, torch.ones(5 * n))
    adj_t = torch.sparse_coo_tensor(
        torch.stack([src, dst]), 1.0 / degree.clamp_min(1)[dst],
        (n, n)).coalesce()
    weight = torch.randn(c, c, generator=gen)
    weight = weight / torch.linalg.matrix_norm(weight, 2)

    def vjp(v: torch.Tensor) -> torch.Tensor:  # J^T v, ||J|| <= 0.995
        return 0.995 * torch.sparse.mm(adj_t, v) @ weight.t()
    g = torch.randn(n, c, generator=gen)
    result = gmres(vjp, g, 60, 1e-6)
    true = torch.linalg.vector_norm(g - result.z + vjp(result.z)) / \
        torch.linalg.vector_norm(g)
    assert result.z.dtype == torch.float32 and result.z.shape == g.shape
    assert result.steps <= 30 and result.residual < 1e-6
    assert float(true) < 2e-6
