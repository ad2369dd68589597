"""Gradient methods as values, and the closed-form map protocol."""
from __future__ import annotations

from typing import Callable, Optional

import pytest
import torch

from pyg_rbp import (BPTT, CG, METHODS, TBPTT, ClosedFormMap, FixedPoint, Hybrid,
                     GradientMethod, Neumann, RBPGatedGraphConv, rbp)
from pyg_rbp.implicit import IMPLICIT_METHODS, REGISTRY, resolve_method
from pyg_rbp.implicit.adjoint import AdjointResult

from ..conftest import random_graph


def _contraction(n: int, rho: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return a * (rho / torch.linalg.matrix_norm(a, ord=2))


def _tanh_grads(method, **kw):
    """Gradients of a small nonlinear fixed point under ``method``."""
    gen = torch.Generator().manual_seed(3)
    w = _contraction(6, 0.6).requires_grad_()
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64,
                    requires_grad=True)
    torch.manual_seed(0)  # FixedPoint's random start
    h, stats = rbp(lambda h: torch.tanh(h @ w.T + x),
                   torch.zeros(4, 6, dtype=torch.float64), method=method,
                   max_iter=60, tol=0, **kw)
    return torch.autograd.grad(h.pow(2).sum(), [w, x]), stats


@pytest.mark.parametrize("name,value", [
    ("neumann", Neumann(steps=7, tol=1e-9)),
    ("cg", CG(steps=7, tol=1e-9)),
    ("fixed_point", FixedPoint(steps=7, tol=1e-9)),
    ("bptt", BPTT()),
    ("tbptt", TBPTT(steps=7)),
])
def test_value_and_name_give_the_same_gradient(name: str,
                                               value: GradientMethod) -> None:
    by_name, s1 = _tanh_grads(name, backward_steps=7, backward_tol=1e-9)
    by_value, s2 = _tanh_grads(value)
    for a, b in zip(by_name, by_value):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert s1.method == s2.method == name == value.name
    assert s1.backward_steps == s2.backward_steps


def test_the_settings_of_a_value_change_the_solve() -> None:
    """Few Neumann terms truncate the series; many reach the exact answer."""
    exact, _ = _tanh_grads(Neumann(steps=400, tol=0))
    short, s = _tanh_grads(Neumann(steps=2, tol=0))
    assert s.backward_steps == 2
    err = float((short[0] - exact[0]).norm() / exact[0].norm())
    assert err > 1e-3
    cg, s = _tanh_grads(CG(steps=60, tol=1e-14))
    assert float((cg[0] - exact[0]).norm() / exact[0].norm()) < 1e-8


def test_fixed_point_init_is_a_setting() -> None:
    """From z0 = g, one iteration is the two-term Neumann sum exactly."""
    one, _ = _tanh_grads(FixedPoint(steps=1, tol=0, init="grad"))
    two_terms, _ = _tanh_grads(Neumann(steps=1, tol=0))
    for a, b in zip(one, two_terms):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_one_registry() -> None:
    assert METHODS == ("neumann", "cg", "fixed_point", "bptt", "tbptt",
                       "hybrid", "gmres", "anderson", "phantom")
    assert METHODS == tuple(REGISTRY)
    assert IMPLICIT_METHODS == ("neumann", "cg", "fixed_point", "hybrid",
                                "gmres", "anderson")
    for name, cls in REGISTRY.items():
        made = resolve_method(name, 9, 1e-4)
        assert isinstance(made, cls) and made.name == name
    assert resolve_method("tbptt", 9) == TBPTT(steps=9)
    assert resolve_method("cg") == CG(steps=20, tol=1e-6)
    assert resolve_method("hybrid", 9, 1e-4) == \
        Hybrid(adjoint=Neumann(steps=9, tol=1e-4))


def test_bad_methods_are_refused() -> None:
    f = torch.tanh
    h0 = torch.zeros(3)
    with pytest.raises(ValueError, match="carries its own settings"):
        rbp(f, h0, method=Neumann(steps=5), backward_steps=5)
    with pytest.raises(ValueError, match="'steps' must be >= 1"):
        Neumann(steps=0)
    with pytest.raises(ValueError, match="'tol' must be a finite"):
        CG(tol=-1.0)
    with pytest.raises(ValueError, match="'init' must be one of"):
        FixedPoint(init="ones")
    with pytest.raises(TypeError, match="'method' must be a name"):
        rbp(f, h0, method=3)
    with pytest.raises(ValueError, match="'method' must be one of"):
        rbp(f, h0, method="newton")
    with pytest.raises(TypeError, match="neither implicit"):
        rbp(f, h0, method=GradientMethod())
    with pytest.raises(ValueError, match="'backward_steps' must be >= 1"):
        rbp(f, h0, method="neumann", backward_steps=0)


class _ExactSolve(GradientMethod):
    """A user-written implicit method: the adjoint by a dense solve."""

    name = "exact"
    implicit = True

    def solve(self, vjp, g, jvp) -> AdjointResult:
        n = g.numel()
        eye = torch.eye(n, dtype=g.dtype)
        jt = torch.stack([vjp(e.reshape(g.shape)).reshape(-1) for e in eye],
                         dim=1)
        z = torch.linalg.solve(eye - jt, g.reshape(-1)).reshape(g.shape)
        return AdjointResult(z, n, 0.0, False)


def test_a_user_method_plugs_in() -> None:
    exact, stats = _tanh_grads(_ExactSolve())
    series, _ = _tanh_grads(Neumann(steps=400, tol=0))
    for a, b in zip(exact, series):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert stats.method == "exact" and stats.backward_steps == 24


def test_layer_takes_a_method_value() -> None:
    ei = random_graph(12, 40)
    x = torch.randn(12, 4)
    grads = []
    for kw in ({"method": "cg", "backward_steps": 5, "backward_tol": 0.0},
               {"method": CG(steps=5, tol=0.0)}):
        torch.manual_seed(0)
        conv = RBPGatedGraphConv(4, num_layers=25, **kw)
        conv(x, ei).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in conv.parameters()])
        assert conv.stats.method == "cg" and conv.stats.backward_steps == 5
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert "method=CG(steps=5, tol=0.0)" in repr(conv)
    with pytest.raises(ValueError, match="carries its own settings"):
        RBPGatedGraphConv(4, method=Neumann(), backward_steps=3)
    # Switching by name after construction still works (drop-in code).
    conv.method, conv.backward_steps, conv.backward_tol = "tbptt", 2, 0.0
    conv(x, ei).sum().backward()
    assert conv.stats.method == "tbptt" and conv.stats.backward_steps == 2


class _Linear:
    """F(h) = A h + b, implementing ClosedFormMap; counts its products."""

    has_closed_form_vjp = True

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b
        self.products = self.released = 0

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.a @ h + self.b

    def vjp_at(self, h: torch.Tensor
               ) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        def vjp(v: torch.Tensor) -> torch.Tensor:
            self.products += 1
            return self.a.T @ v
        return vjp

    def release(self) -> None:
        self.released += 1


@pytest.mark.parametrize("method", [Neumann(steps=300, tol=1e-15),
                                    FixedPoint(steps=300, tol=1e-15),
                                    CG(steps=50, tol=1e-15)])
def test_user_map_with_the_protocol(method: GradientMethod) -> None:
    """The map's own J^T v is used; the gradient equals the exact solve for
    both A and b: dL/db = z, dL/dA = z h*^T, z = (I - A^T)^-1 g."""
    a = _contraction(5, 0.7).requires_grad_()
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, dtype=torch.float64)
    f = _Linear(a, b)
    assert isinstance(f, ClosedFormMap)
    assert not isinstance(torch.tanh, ClosedFormMap)
    h, stats = rbp(f, torch.zeros(5, dtype=torch.float64), method=method,
                   max_iter=400, tol=0)
    ga, gb = torch.autograd.grad((h * g).sum(), [a, b])
    eye = torch.eye(5, dtype=torch.float64)
    h_star = torch.linalg.solve(eye - a.detach(), b.detach())
    z = torch.linalg.solve((eye - a.detach()).T, g)
    torch.testing.assert_close(gb, z, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ga, torch.outer(z, h_star), rtol=1e-9,
                               atol=1e-12)
    assert f.products >= stats.backward_steps > 0
    assert f.released == 1


def test_a_broken_promise_is_reported() -> None:
    """vjp_at returning None while has_closed_form_vjp is missing (taken as
    True) leaves no way to the product: a clear error, not a wrong one.
    has_closed_form_vjp = False falls back to autograd, exactly."""
    a = _contraction(4, 0.5)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)

    class NoProduct:
        def __call__(self, h):
            return a @ h + b

        def vjp_at(self, h):
            return None

    h, _ = rbp(NoProduct(), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="has_closed_form_vjp"):
        h.sum().backward()
    honest = NoProduct()
    honest.has_closed_form_vjp = False
    h, _ = rbp(honest, torch.zeros(4, dtype=torch.float64), max_iter=300,
               tol=0, method=Neumann(steps=300, tol=1e-15))
    (gb, ) = torch.autograd.grad(h.sum(), b)
    eye = torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(gb, torch.linalg.solve((eye - a).T,
                                                      torch.ones(4)
                                                      .double()))
