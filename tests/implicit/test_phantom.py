"""The phantom gradient against its closed form and the implicit gradient
it approximates (dense solves as the oracles)."""
from __future__ import annotations

import pytest
import torch

from pyg_rbp import Phantom, RBPGatedGraphConv, rbp
from pyg_rbp.implicit import IMPLICIT_METHODS, resolve_method


def _problem(seed: int = 0, n: int = 6):
    gen = torch.Generator().manual_seed(seed)
    w = 0.5 * torch.randn(n, n, generator=gen, dtype=torch.double) / n ** .5
    x = torch.randn(n, generator=gen, dtype=torch.double,
                    requires_grad=True)
    c = torch.randn(n, generator=gen, dtype=torch.double)
    return w, x, c


def _phantom_grad(w, x, c, steps: int, damping: float):
    h, stats = rbp(lambda h: torch.tanh(w @ h + x), torch.zeros_like(x),
                   method=Phantom(steps=steps, damping=damping),
                   max_iter=400, tol=1e-14)
    (grad, ) = torch.autograd.grad((c * h).sum(), x)
    return grad, h, stats


def _dense(w, x, c):
    """h*, J = diag(1 - h*^2) W and the implicit dL/dx by a dense solve."""
    with torch.no_grad():
        h = torch.zeros_like(x)
        for _ in range(400):
            h = torch.tanh(w @ h + x)
    d = 1 - h.pow(2)
    jac = d[:, None] * w
    eye = torch.eye(len(x), dtype=x.dtype)
    z = torch.linalg.solve(eye - jac.T, c)
    return h, jac, d * z  # dF/dx = diag(d)


def test_phantom_gradient_is_its_truncated_series() -> None:
    r"""dL/dx = lambda sum_{i<k} dF/dx^T ((1 - lambda) I + lambda J^T)^i c,
    computed densely."""
    w, x, c = _problem()
    h_star, jac, _ = _dense(w, x, c)
    eye = torch.eye(len(x), dtype=x.dtype)
    for steps, damping in ((1, 1.0), (5, 0.5), (12, 0.8)):
        got, h, stats = _phantom_grad(w, x, c, steps, damping)
        m = (1 - damping) * eye + damping * jac
        v, acc = c.clone(), torch.zeros_like(c)
        for _ in range(steps):
            acc = acc + v
            v = m.T @ v
        want = damping * (1 - h_star.pow(2)) * acc
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(h.detach(), h_star, rtol=0, atol=1e-12)
        assert stats.backward_method == "phantom"
        assert stats.backward_steps == steps and stats.converged


def test_phantom_error_shrinks_as_its_bound_says() -> None:
    """Against the implicit gradient (dense solve): the error after k steps
    is at most ||M||^k times the full series' size, M = (1-l) I + l J."""
    w, x, c = _problem(seed=1)
    _, jac, exact = _dense(w, x, c)
    damping = 0.5
    eye = torch.eye(len(x), dtype=x.dtype)
    norm = float(torch.linalg.matrix_norm((1 - damping) * eye +
                                          damping * jac.T, 2))
    assert norm < 1
    errors = []
    for steps in (2, 8, 32, 96):
        got, _, _ = _phantom_grad(w, x, c, steps, damping)
        err = float((got - exact).norm() / exact.norm())
        errors.append(err)
        # the tail of the series: sum_{i >= k} ||M||^i ||dF/dx|| ||c||
        bound = norm ** steps / (1 - norm) * damping * float(c.norm()) / \
            float(exact.norm())
        assert err <= bound + 1e-13  # (rounding, once the tail is gone)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-10


def test_phantom_in_the_layer_by_value_and_by_name() -> None:
    torch.manual_seed(0)
    x, edge_index = torch.randn(20, 8), torch.randint(0, 20, (2, 60))
    conv = RBPGatedGraphConv(8, method=Phantom(steps=10, damping=0.5))
    conv(x, edge_index).sum().backward()
    assert conv.stats.backward_method == "phantom"
    assert conv.stats.backward_steps == 10 and conv.stats.converged
    assert all(p.grad is not None for p in conv.parameters())
    assert resolve_method("phantom", 7, None) == Phantom(steps=7)
    conv = RBPGatedGraphConv(8, method="phantom", backward_steps=3)
    with torch.no_grad():
        conv(x, edge_index)
    assert conv.stats.backward_method == "phantom"
    assert "phantom" not in IMPLICIT_METHODS


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(steps=0), ValueError, "'steps' must be >= 1"),
    (dict(damping=0.0), ValueError, "'damping' must be in"),
    (dict(damping=1.5), ValueError, "'damping' must be in"),
    (dict(damping=float("nan")), ValueError, "'damping' must be"),
])
def test_bad_phantom_settings(kwargs, err, match) -> None:
    with pytest.raises(err, match=match):
        Phantom(**kwargs)


def test_phantom_is_not_a_tbptt() -> None:
    """They share how steps are recorded, not a type: code that asks
    isinstance(method, TBPTT) does not get the damped method."""
    from pyg_rbp import TBPTT, Phantom
    assert not isinstance(Phantom(), TBPTT)
    assert not isinstance(TBPTT(), Phantom)
    assert Phantom.from_options(7, 1e-6) == Phantom(steps=7)
    assert TBPTT().damping == 1.0 and Phantom().damping == 0.5
