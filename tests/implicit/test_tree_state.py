"""States of several tensors (tuple / list / dict) in the engine, against
finite differences, an exact dense solve and a closed-form hypergradient."""
from __future__ import annotations

import warnings

import pytest
import torch

from pyg_rbp import (BPTT, CG, ConvergenceWarning, FixedPoint, Hybrid,
                     Neumann, rbp)
from pyg_rbp.utils import SavedTensorMeter

DT = torch.double


def _pair_map(seed: int = 0):
    """``(a, b) -> (tanh(A a + B b + x), 0.5 tanh(C a) + 0.3 b)``: a
    contraction with cross-terms both ways."""
    gen = torch.Generator().manual_seed(seed)

    def mat(n, m, scale):
        w = torch.randn(n, m, generator=gen, dtype=DT)
        return (scale * w / torch.linalg.matrix_norm(w, 2))

    A, B, C = mat(4, 4, 0.4), mat(4, 3, 0.3), mat(3, 4, 0.5)
    x = torch.randn(4, generator=gen, dtype=DT)
    params = [p.requires_grad_(True) for p in (A, B, C, x)]

    def f(state):
        a, b = state
        return (torch.tanh(A @ a + B @ b + x), 0.5 * torch.tanh(C @ a) + 0.3 * b)
    return params, f


def _loss(state):
    a, b = state
    return (a * torch.arange(1., 5., dtype=DT)).sum() + b.pow(2).sum()


def _grads(method, **kw):
    params, f = _pair_map()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        state, stats = rbp(f, (torch.zeros(4, dtype=DT),
                               torch.zeros(3, dtype=DT)),
                           method=method, max_iter=kw.get("max_iter", 500),
                           tol=kw.get("tol", 1e-13))
        grads = torch.autograd.grad(_loss(state), params)
    return grads, stats, state


def _dense_oracle():
    """The implicit gradient by a dense solve of (I - J^T) z = g."""
    params, f = _pair_map()
    with torch.no_grad():
        s = (torch.zeros(4, dtype=DT), torch.zeros(3, dtype=DT))
        for _ in range(2000):
            s = f(s)
    vec = torch.cat(s).requires_grad_(True)

    def flat(v):
        return torch.cat(f((v[:4], v[4:])))
    jac = torch.autograd.functional.jacobian(flat, vec.detach())
    g = torch.autograd.grad(_loss((vec[:4], vec[4:])), vec)[0]
    z = torch.linalg.solve(torch.eye(7, dtype=DT) - jac.T, g)
    out = flat(vec.detach())
    return torch.autograd.grad(out, params, z)


@pytest.mark.parametrize("method", [
    Neumann(steps=500, tol=1e-14), CG(steps=200, tol=1e-14),
    FixedPoint(steps=500, tol=1e-14, init="zeros"), BPTT(), Hybrid()])
def test_tuple_state_gradients_against_a_dense_solve(method) -> None:
    exact = _dense_oracle()
    grads, stats, state = _grads(method)
    assert isinstance(state, tuple) and state[0].shape == (4, )
    assert stats.converged and stats.leaf_residuals[0] <= 1e-12
    for got, want in zip(grads, exact):
        assert float((got - want).norm() / want.norm()) < 1e-6


def test_tuple_state_gradient_against_finite_differences() -> None:
    grads, _, _ = _grads(Neumann(steps=500, tol=1e-14))
    params, f = _pair_map()
    x = params[3]
    eps = 1e-6
    for i in range(4):
        vals = []
        for sign in (1, -1):
            with torch.no_grad():
                x[i] += sign * eps
                s = (torch.zeros(4, dtype=DT), torch.zeros(3, dtype=DT))
                for _ in range(500):
                    s = f(s)
                vals.append(float(_loss(s)))
                x[i] -= sign * eps
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert abs(fd - float(grads[3][i])) < 1e-6


def test_dict_state_and_list_state_keep_their_structure() -> None:
    params, f = _pair_map()

    def g(state):
        a, b = f((state["a"], state["b"]))
        return {"b": b, "a": a}  # order of keys does not matter
    out, stats = rbp(g, {"a": torch.zeros(4, dtype=DT),
                         "b": torch.zeros(3, dtype=DT)}, tol=1e-12,
                     max_iter=500)
    assert set(out) == {"a", "b"} and set(stats.leaf_residuals) == {"a", "b"}
    out_list, _ = rbp(lambda s: list(f(tuple(s))),
                      [torch.zeros(4, dtype=DT), torch.zeros(3, dtype=DT)],
                      tol=1e-12, max_iter=500)
    assert isinstance(out_list, list)
    torch.testing.assert_close(out_list[0], out["a"])


def test_ridge_regression_hypergradient_in_closed_form() -> None:
    """Inner loop: heavy-ball gradient descent on (w, v) for
    1/2 ||X w - y||^2 + lam/2 ||w||^2; its fixed point is the ridge
    solution w* = (X^T X + lam I)^-1 X^T y, v* = 0. The hypergradient of
    the validation loss 1/2 ||X_v w* - y_v||^2 with respect to lam is
    -(X_v^T (X_v w* - y_v))^T (X^T X + lam I)^-1 w*."""
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(30, 5, generator=gen, dtype=DT), \
        torch.randn(30, generator=gen, dtype=DT)
    Xv, yv = torch.randn(20, 5, generator=gen, dtype=DT), \
        torch.randn(20, generator=gen, dtype=DT)
    log_lam = torch.tensor(0.0, dtype=DT, requires_grad=True)
    lr, beta = 0.01, 0.5

    def step(state):
        w, v = state
        grad = X.T @ (X @ w - y) + log_lam.exp() * w
        v = beta * v - (1 - beta) * grad
        return (w + lr * v, v)

    for method in ("neumann", "cg", "hybrid"):
        state, stats = rbp(step, (torch.zeros(5, dtype=DT),
                                  torch.zeros(5, dtype=DT)),
                           method=method, max_iter=5000, tol=1e-13,
                           backward_steps=5000, backward_tol=1e-13)
        assert stats.converged
        w = state[0]
        meta = 0.5 * (Xv @ w - yv).pow(2).sum()
        (got, ) = torch.autograd.grad(meta, log_lam)
        lam = float(log_lam.exp())
        with torch.no_grad():
            a = X.T @ X + lam * torch.eye(5, dtype=DT)
            w_star = torch.linalg.solve(a, X.T @ y)
            dl_dw = Xv.T @ (Xv @ w_star - yv)
            exact = -dl_dw @ torch.linalg.solve(a, w_star) * lam  # d/dlog
        assert abs(float(got) - float(exact)) < 1e-6 * max(1, abs(float(exact)))


def test_tuple_state_memory_does_not_grow_with_steps() -> None:
    params, f = _pair_map()

    def saved(steps: int) -> int:
        with SavedTensorMeter() as meter:
            rbp(f, (torch.zeros(4, dtype=DT), torch.zeros(3, dtype=DT)),
                method="neumann", max_iter=steps, tol=0.0)
        return meter.bytes
    assert saved(10) == saved(200)


class _HeavyBall:
    """Heavy-ball descent on 1/2 w^T Q w - c^T w as a structured map
    ``(w, v) -> (w + lr v', v')``, ``v' = beta v - (1 - beta)(Q w - c)``,
    with its transposed Jacobian on the structure (``vjp_at``), counting
    products and releases."""

    has_closed_form_vjp = True

    def __init__(self, q: torch.Tensor, c: torch.Tensor, lr: float,
                 beta: float) -> None:
        self.q, self.c, self.lr, self.beta = q, c, lr, beta
        self.products = self.releases = 0

    def __call__(self, state):
        w, v = state
        v = self.beta * v - (1 - self.beta) * (self.q @ w - self.c)
        return (w + self.lr * v, v)

    def vjp_at(self, state):
        def vjp(cot):
            self.products += 1
            cw, cv = cot
            u = cv + self.lr * cw
            return (cw - (1 - self.beta) * self.q.T @ u, self.beta * u)
        return vjp

    def release(self) -> None:
        self.releases += 1


@pytest.mark.parametrize("method", ["neumann", "fixed_point", "cg"])
def test_structured_map_with_closed_form_vjp(method) -> None:
    """A map on a tuple state that offers ``vjp_at`` on its structure: the
    adjoint products go through it (not autograd), ``release`` reaches it,
    and the gradient is the exact one (w* = Q^-1 c: dL/dc = Q^-T dL/dw*)."""
    gen = torch.Generator().manual_seed(2)
    m = torch.randn(4, 4, generator=gen, dtype=DT)
    q = m @ m.T / 4 + torch.eye(4, dtype=DT)
    c = torch.randn(4, generator=gen, dtype=DT, requires_grad=True)
    f = _HeavyBall(q, c, lr=0.3 / float(torch.linalg.matrix_norm(q, 2)),
                   beta=0.5)
    state, stats = rbp(f, (torch.zeros(4, dtype=DT), torch.zeros(4, dtype=DT)),
                       method=method, max_iter=5000, tol=1e-14,
                       backward_steps=5000, backward_tol=1e-14)
    assert stats.converged
    weights = torch.arange(1., 5., dtype=DT)
    (got, ) = torch.autograd.grad((state[0] * weights).sum(), c)
    exact = torch.linalg.solve(q.T, weights)
    assert float((got - exact).norm() / exact.norm()) < 1e-8
    assert f.products >= stats.backward_steps > 0 and f.releases == 1


def test_bad_structures_are_refused() -> None:
    a, b = torch.zeros(3), torch.zeros(2)
    with pytest.raises(ValueError, match=r"must be a tuple of 2 tensors"):
        rbp(lambda s: (s[0], ), (a, b))
    with pytest.raises(ValueError, match=r"\[1\] must have the shape"):
        rbp(lambda s: (s[0], torch.zeros(5)), (a, b))
    with pytest.raises(ValueError, match=r"must be a dict with the keys"):
        rbp(lambda s: {"x": s["x"]}, {"x": a, "y": b})
    with pytest.raises(TypeError, match=r"one dtype and device"):
        rbp(lambda s: s, (a, b.double()))
    with pytest.raises(TypeError, match=r"'h0\[1\]' must be a torch.Tensor"):
        rbp(lambda s: s, (a, 3.0))
    with pytest.raises(ValueError, match=r"at least one tensor"):
        rbp(lambda s: s, ())
    with pytest.raises(ValueError, match=r"'batch' needs a tensor state"):
        rbp(lambda s: s, (a, b), batch=torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"floating-point dtype"):
        rbp(lambda s: s, (a, torch.zeros(2, dtype=torch.long)))
