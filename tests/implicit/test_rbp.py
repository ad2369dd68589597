"""The engine on maps with known answers: no graphs involved."""
from __future__ import annotations

import warnings

import pytest
import torch

from pyg_rbp import ConvergenceWarning, rbp
from pyg_rbp.implicit import adjoint

RBP_METHODS = ["neumann", "cg", "fixed_point"]
ALL_METHODS = RBP_METHODS + ["bptt", "tbptt"]


def _contraction(n: int, rho: float, seed: int = 0) -> torch.Tensor:
    """A random non-symmetric matrix with spectral norm ``rho``."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return a * (rho / torch.linalg.matrix_norm(a, ord=2))


def _tanh_problem(device: torch.device, n: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    w = _contraction(n, 0.6, seed).to(device).requires_grad_()
    u = torch.randn(n, n, generator=gen, dtype=torch.float64).to(device)
    u.requires_grad_()
    x = torch.randn(3, n, generator=gen, dtype=torch.float64).to(device)
    x.requires_grad_()
    r = torch.randn(3, n, generator=gen, dtype=torch.float64).to(device)

    def f(h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(h @ w.T + x @ u.T)

    def loss(h: torch.Tensor) -> torch.Tensor:
        return (h * r).sum() + 0.5 * h.pow(2).sum()

    return f, loss, [w, u, x]


@pytest.mark.parametrize("method", RBP_METHODS)
def test_linear_map_gradient_is_exact(method: str, device: torch.device) -> None:
    """F(h) = A h + b has h* = (I - A)^-1 b, so dL/db = (I - A)^-T g."""
    a = _contraction(5, 0.7).to(device)
    b = torch.randn(5, dtype=torch.float64, device=device, requires_grad=True)
    g = torch.randn(5, dtype=torch.float64, device=device)
    h, stats = rbp(lambda h: a @ h + b, torch.zeros_like(b), method=method,
                   max_iter=300, tol=0, backward_steps=300, backward_tol=1e-15)
    (grad, ) = torch.autograd.grad((h * g).sum(), b)
    eye = torch.eye(5, dtype=torch.float64, device=device)
    torch.testing.assert_close(h.detach(), torch.linalg.solve(eye - a, b.detach()),
                               rtol=1e-12, atol=1e-12)
    expected = torch.linalg.solve((eye - a).T, g)
    assert float((grad - expected).norm() / expected.norm()) < 1e-9
    assert stats.backward_steps is not None and stats.backward_steps > 0


class _LinearMap:
    """F(h) = A h + b with a closed-form ``vjp_at``, counting its uses."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b, self.products = a, b, 0

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.a @ h + self.b

    def vjp_at(self, h: torch.Tensor):
        def vjp(v: torch.Tensor) -> torch.Tensor:
            self.products += 1
            return self.a.T @ v
        return vjp


@pytest.mark.parametrize("method", ["neumann", "fixed_point"])
def test_map_with_closed_form_vjp_is_used(method: str) -> None:
    """A map's own ``vjp_at`` replaces autograd in the adjoint solve, and
    the gradient is still exact."""
    a = _contraction(5, 0.7)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, dtype=torch.float64)
    f = _LinearMap(a, b)
    h, stats = rbp(f, torch.zeros_like(b), method=method, max_iter=300,
                   tol=0, backward_steps=300, backward_tol=1e-15)
    (grad, ) = torch.autograd.grad((h * g).sum(), b)
    expected = torch.linalg.solve((torch.eye(5, dtype=torch.float64) - a).T,
                                  g)
    assert float((grad - expected).norm() / expected.norm()) < 1e-9
    assert f.products == stats.backward_steps > 0


@pytest.mark.parametrize("method", RBP_METHODS)
def test_nonlinear_gradient_matches_dense_solve(method: str,
                                                device: torch.device) -> None:
    f, loss, params = _tanh_problem(device)
    h, _ = rbp(f, torch.zeros(3, 6, dtype=torch.float64, device=device),
               method=method, max_iter=200, tol=0, backward_steps=300,
               backward_tol=1e-15)
    grads = torch.autograd.grad(loss(h), params)

    # Oracle: J from torch.autograd.functional.jacobian, exact solve.
    h_star = h.detach()
    jac = torch.autograd.functional.jacobian(f, h_star).reshape(18, 18)
    h_req = h_star.clone().requires_grad_()
    (g, ) = torch.autograd.grad(loss(h_req), h_req)
    z = torch.linalg.solve(torch.eye(18, dtype=torch.float64, device=device)
                           - jac.T, g.reshape(-1))
    expected = torch.autograd.grad(f(h_star), params, z.reshape(3, 6))
    for got, exp in zip(grads, expected):
        assert float((got - exp).norm() / exp.norm()) < 1e-9


def test_autograd_grad_backward_and_double_calls() -> None:
    f, loss, params = _tanh_problem(torch.device("cpu"))
    h0 = torch.zeros(3, 6, dtype=torch.float64)
    h, _ = rbp(f, h0, max_iter=200, tol=0, backward_tol=0, backward_steps=60)
    out = loss(h)
    first = torch.autograd.grad(out, params, retain_graph=True)
    second = torch.autograd.grad(out, params, retain_graph=True)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    out.backward(retain_graph=True)
    grads_once = [p.grad.clone() for p in params]
    out.backward()
    for p, once, ref in zip(params, grads_once, first):
        torch.testing.assert_close(once, ref)
        torch.testing.assert_close(p.grad, 2 * ref)


def test_no_grad_builds_no_graph() -> None:
    f, _, _ = _tanh_problem(torch.device("cpu"))
    with torch.no_grad():
        h, stats = rbp(f, torch.zeros(3, 6, dtype=torch.float64))
    assert h.grad_fn is None and not h.requires_grad
    assert stats.converged is True and stats.forward_steps < 100


@pytest.mark.parametrize("method", ALL_METHODS)
def test_tol_zero_runs_exactly_max_iter(method: str) -> None:
    f, loss, params = _tanh_problem(torch.device("cpu"))
    calls = []

    def counted(h: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return f(h)

    h, stats = rbp(counted, torch.zeros(3, 6, dtype=torch.float64),
                   method=method, max_iter=37, tol=0, backward_steps=5)
    assert len(calls) == 37 and stats.forward_steps == 37
    assert len(stats.residual_trace) == 37


@pytest.mark.parametrize("method", RBP_METHODS)
def test_backward_tol_zero_runs_exactly_backward_steps(method: str) -> None:
    f, loss, params = _tanh_problem(torch.device("cpu"))
    h, stats = rbp(f, torch.zeros(3, 6, dtype=torch.float64), method=method,
                   max_iter=100, tol=1e-10, backward_steps=13, backward_tol=0)
    assert stats.backward_steps is None
    loss(h).backward()
    assert stats.backward_steps == 13


def test_early_stopping_with_tol() -> None:
    f, _, _ = _tanh_problem(torch.device("cpu"))
    h, stats = rbp(f, torch.zeros(3, 6, dtype=torch.float64), tol=1e-8,
                   max_iter=500)
    assert stats.converged is True
    assert stats.forward_residual <= 1e-8
    assert stats.forward_steps < 100
    # The residual really is that of the returned state.
    with torch.no_grad():
        res = (f(h) - h).norm() / h.norm()
    assert float(res) < 1e-7


def test_neumann_equals_tbptt_with_one_more_step() -> None:
    """Proposition 2: at a fixed point, K Neumann terms == TBPTT of K+1 steps."""
    for k in (1, 3, 7):
        f, loss, params = _tanh_problem(torch.device("cpu"), seed=k)
        h0 = torch.zeros(3, 6, dtype=torch.float64)
        h, _ = rbp(f, h0, method="neumann", max_iter=200, tol=0,
                   backward_steps=k, backward_tol=0)
        neumann = torch.autograd.grad(loss(h), params)
        h, stats = rbp(f, h0, method="tbptt", max_iter=200, tol=0,
                       backward_steps=k + 1)
        assert stats.backward_steps == k + 1
        tbptt = torch.autograd.grad(loss(h), params)
        for a, b in zip(neumann, tbptt):
            assert float((a - b).norm() / b.norm()) < 1e-12
        if k == 1:  # and it is a truncation: not yet the exact gradient
            h, _ = rbp(f, h0, method="neumann", max_iter=200, tol=0,
                       backward_steps=200, backward_tol=1e-15)
            exact = torch.autograd.grad(loss(h), params)
            assert float((neumann[0] - exact[0]).norm()
                         / exact[0].norm()) > 1e-3


def test_non_convergence_warns_once_and_returns() -> None:
    a = _contraction(4, 0.999)
    b = torch.ones(4, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h, stats = rbp(lambda h: a @ h + b, torch.zeros(4, dtype=torch.float64),
                       max_iter=20, tol=1e-10)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1
    assert "did not reach tol" in str(conv[0].message)
    assert stats.converged is False and stats.forward_steps == 20
    assert torch.isfinite(h).all()


def test_diverging_backward_warns_and_stays_finite() -> None:
    """h* = 0 is a fixed point of F(h) = 3 A h, but I - J is not contractive:
    the adjoint series diverges. It must stop, warn and stay finite."""
    a = torch.eye(4, dtype=torch.float64) * 1.5 + _contraction(4, 0.5)
    w = torch.ones(1, dtype=torch.float64, requires_grad=True)
    for method in RBP_METHODS:
        h, stats = rbp(lambda h: w * (a @ h), torch.zeros(4, dtype=torch.float64),
                       method=method, max_iter=10, tol=1e-6,
                       backward_steps=200, backward_tol=0)
        with pytest.warns(ConvergenceWarning, match="diverged") if \
                method != "cg" else warnings.catch_warnings():
            (grad, ) = torch.autograd.grad((h + 1).pow(2).sum(), w)
        assert torch.isfinite(grad).all()
        if method != "cg":  # CG on the normal equations is SPD: it converges
            assert stats.backward_diverged is True


def test_nonfinite_forward_warns() -> None:
    with pytest.warns(ConvergenceWarning, match="non-finite"):
        _, stats = rbp(lambda h: h * 1e200 + 1, torch.ones(3, dtype=torch.float64),
                       max_iter=10)
    assert stats.converged is False


def test_per_graph_convergence() -> None:
    """Three graphs contracting at 0.1, 0.5 and 0.9: each stops on its own and
    ends where it would have ended alone."""
    rates = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    sizes = [2, 3, 4]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    b = torch.linspace(1, 2, 9, dtype=torch.float64).unsqueeze(-1).repeat(1, 2)

    def f(h: torch.Tensor, rate=rates[batch].unsqueeze(-1), bias=b):
        return rate * h + bias

    with torch.no_grad():
        h, stats = rbp(f, torch.zeros(9, 2, dtype=torch.float64), tol=1e-6,
                       max_iter=500, batch=batch)
    assert stats.converged.tolist() == [True, True, True]
    steps = stats.graph_steps.tolist()
    assert steps[0] < steps[1] < steps[2]
    assert stats.graph_residual.shape == (3, )
    start = 0
    for g, n in enumerate(sizes):
        sl = slice(start, start + n)
        start += n
        with torch.no_grad():
            alone, st = rbp(lambda h: rates[g] * h + b[sl],
                            torch.zeros(n, 2, dtype=torch.float64), tol=1e-6,
                            max_iter=500)
        torch.testing.assert_close(h[sl], alone, rtol=0, atol=0)
        assert st.forward_steps == steps[g] + 1


def test_per_graph_converged_is_per_graph_when_some_fail() -> None:
    rates = torch.tensor([0.1, 0.999], dtype=torch.float64)
    batch = torch.tensor([0, 0, 1, 1])
    with pytest.warns(ConvergenceWarning, match="some graphs did not reach"):
        _, stats = rbp(lambda h: rates[batch] * h + 1,
                       torch.zeros(4, dtype=torch.float64), tol=1e-8,
                       max_iter=50, batch=batch)
    assert stats.converged.tolist() == [True, False]


def test_anderson_converges_in_fewer_steps() -> None:
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(-0.95, 0.95, 30, dtype=torch.float64)) @ q.T
    b = torch.randn(30, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(30, dtype=torch.float64) - a, b)
    runs = {}
    for solver in ("fixed_point", "anderson"):
        h, stats = rbp(lambda h: a @ h + b, torch.zeros(30, dtype=torch.float64),
                       solver=solver, tol=1e-8, max_iter=2000)
        assert stats.converged is True
        assert float((h.detach() - exact).norm() / exact.norm()) < 1e-6
        runs[solver] = stats.forward_steps
    assert runs["anderson"] * 2 <= runs["fixed_point"]


def test_anderson_gradients_match(device: torch.device) -> None:
    f, loss, params = _tanh_problem(device)
    h0 = torch.zeros(3, 6, dtype=torch.float64, device=device)
    grads = []
    for solver in ("fixed_point", "anderson"):
        h, _ = rbp(f, h0, solver=solver, tol=1e-13, max_iter=300,
                   backward_steps=200, backward_tol=1e-15)
        grads.append(torch.autograd.grad(loss(h), params))
    for a, b in zip(*grads):
        assert float((a - b).norm() / b.norm()) < 1e-9


def test_memory_is_flat_for_rbp_and_linear_for_bptt() -> None:
    """Count the bytes autograd saves for the backward, T = 10 vs T = 100."""
    w = _contraction(64, 0.5).requires_grad_()
    x = torch.randn(256, 64, dtype=torch.float64)

    def f(h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(h @ w + x)

    def saved_bytes(method: str, steps: int) -> int:
        total = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            h, _ = rbp(f, torch.zeros(256, 64, dtype=torch.float64),
                       method=method, max_iter=steps, tol=0, backward_steps=5)
            h.sum()
        return total[0]

    for method in RBP_METHODS:
        small, large = saved_bytes(method, 10), saved_bytes(method, 100)
        assert small == large > 0
    small, large = saved_bytes("bptt", 10), saved_bytes("bptt", 100)
    assert 9.5 < large / small < 10.5
    # tbptt keeps its K = 5 steps whatever T is.
    assert saved_bytes("tbptt", 10) == saved_bytes("tbptt", 100)
    assert saved_bytes("tbptt", 100) > saved_bytes("neumann", 100)


def test_adjoint_solvers_agree_on_a_matrix() -> None:
    a = _contraction(20, 0.8, seed=5)
    g = torch.randn(20, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(20, dtype=torch.float64) - a.T, g)
    vjp = lambda v: a.T @ v  # noqa: E731
    jvp = lambda v: a @ v  # noqa: E731
    for res in (adjoint.neumann(vjp, g, 500, 1e-15),
                adjoint.fixed_point(vjp, g, 500, 1e-15),
                adjoint.cg(vjp, jvp, g, 200, 1e-15)):
        assert not res.diverged
        assert float((res.z - exact).norm() / exact.norm()) < 1e-10
    cg = adjoint.cg(vjp, jvp, g, 200, 1e-12)
    assert cg.steps <= 25  # CG on a 20-dim SPD system
    with pytest.raises(ValueError, match="'init' must be one of"):
        adjoint.fixed_point(vjp, g, 5, 0.0, init="ones")


def test_neumann_overwrites_only_its_own_terms() -> None:
    """With ``vjp.overwrite`` the series computes each term after the first
    in place of the one before: the same sum, and the caller's g untouched."""
    a = _contraction(20, 0.8, seed=5)
    g = torch.randn(20, dtype=torch.float64)
    before = g.clone()
    calls = {"overwrite": 0}

    def vjp(v):
        return a.T @ v

    def overwrite(v):
        assert v is not g
        calls["overwrite"] += 1
        return v.copy_(a.T @ v)

    vjp.overwrite = overwrite
    plain = adjoint.neumann(lambda v: a.T @ v, g, 30, 0.0)
    in_place = adjoint.neumann(vjp, g, 30, 0.0)
    assert calls["overwrite"] == 29
    assert torch.equal(g, before)
    torch.testing.assert_close(in_place.z, plain.z, rtol=0, atol=1e-14)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(method="adjoint"), ValueError, "'method' must be one of 'neumann'"),
    (dict(solver="newton"), ValueError, "'solver' must be one of"),
    (dict(solver=3), TypeError, "'solver' must be a name"),
    (dict(max_iter=0), ValueError, "'max_iter' must be >= 1"),
    (dict(max_iter=2.5), TypeError, "'max_iter' must be an int"),
    (dict(tol=-1.0), ValueError, "'tol' must be a finite number >= 0"),
    (dict(tol=float("nan")), ValueError, "'tol' must be a finite number"),
    (dict(backward_steps=0), ValueError, "'backward_steps' must be >= 1"),
    (dict(backward_tol=-1e-3), ValueError, "'backward_tol' must be"),
    (dict(batch=torch.zeros(2, dtype=torch.long)), ValueError,
     r"'batch' must have shape \[3\]"),
    (dict(batch=torch.zeros(3)), TypeError, "'batch' must have dtype"),
    (dict(batch=torch.tensor([0, -1, 0])), ValueError, "indices >= 0"),
])
def test_bad_arguments(kwargs, err, match) -> None:
    with pytest.raises(err, match=match):
        rbp(lambda h: h * 0.5, torch.ones(3, 2), **kwargs)


def test_bad_map_and_state() -> None:
    with pytest.raises(TypeError, match="'f' must be callable"):
        rbp(3, torch.ones(3))
    with pytest.raises(TypeError, match="'h0' must have a floating-point"):
        rbp(lambda h: h, torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="'f' must return a tensor of the shape"):
        rbp(lambda h: h[:2], torch.ones(3), max_iter=3)


def test_neumann_truncation_error_bound() -> None:
    """Proposition 3: ||sum_{t<=K} J^t - (I-J)^-1|| <= ||(I-J)^-1|| ||J||^{K+1}."""
    a = _contraction(12, 0.8, seed=7)
    g = torch.randn(12, dtype=torch.float64)
    eye = torch.eye(12, dtype=torch.float64)
    exact = torch.linalg.solve(eye - a.T, g)
    inv_norm = float(torch.linalg.matrix_norm(torch.linalg.inv(eye - a.T), ord=2))
    errors = []
    for k in range(1, 15):
        res = adjoint.neumann(lambda v: a.T @ v, g, k, 0.0)
        err = float((res.z - exact).norm())
        assert err <= inv_norm * 0.8 ** (k + 1) * float(g.norm()) * (1 + 1e-9)
        errors.append(err)
    assert errors[-1] < errors[0]


def _gapped(n: int, top: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    vals = torch.linspace(0.05, 0.3, n, dtype=torch.float64)
    vals[-1] = top
    return q @ torch.diag(vals) @ q.T


@pytest.mark.parametrize("method", ALL_METHODS)
def test_spectral_penalty_estimates_the_top_singular_value(method) -> None:
    a = _gapped(10, 0.9).requires_grad_()
    b = torch.ones(10, dtype=torch.float64)
    h, stats = rbp(lambda h: a @ h + b, torch.zeros(10, dtype=torch.float64),
                   method=method, tol=1e-10, max_iter=300,
                   jacobian_penalty="spectral")
    pen = stats.jacobian_penalty
    assert pen is not None and pen.requires_grad
    assert float(pen) == pytest.approx(0.81, rel=1e-3)
    (grad, ) = torch.autograd.grad(pen, a)
    # d sigma^2 / dA = 2 sigma u v^T: its norm is 2 sigma = 1.8
    assert float(grad.norm()) == pytest.approx(1.8, rel=1e-2)


def test_frobenius_penalty_is_unbiased() -> None:
    a = _contraction(8, 0.7, seed=2)
    b = torch.ones(8, dtype=torch.float64)
    samples = []
    for _ in range(400):
        _, stats = rbp(lambda h: a @ h + b, torch.zeros(8, dtype=torch.float64),
                       max_iter=5, tol=0, jacobian_penalty="frobenius")
        samples.append(float(stats.jacobian_penalty))
    expected = float(a.pow(2).sum()) / 8
    assert sum(samples) / len(samples) == pytest.approx(expected, rel=0.1)


def test_penalty_off_and_under_no_grad() -> None:
    f, _, _ = _tanh_problem(torch.device("cpu"))
    h0 = torch.zeros(3, 6, dtype=torch.float64)
    _, stats = rbp(f, h0)
    assert stats.jacobian_penalty is None
    with torch.no_grad():
        _, stats = rbp(f, h0, jacobian_penalty="spectral")
    assert stats.jacobian_penalty is None
    with pytest.raises(ValueError, match="'jacobian_penalty' must be one of "
                                         "'spectral', 'frobenius'"):
        rbp(f, h0, jacobian_penalty="l2")


@pytest.mark.parametrize("method", RBP_METHODS)
def test_gradient_scales_with_the_loss(method: str) -> None:
    """A gradient scaler multiplies the loss by s: every adjoint must give s
    times the same gradient (original RBP's random start included)."""
    gen = torch.Generator().manual_seed(3)
    w = (0.4 * torch.randn(5, 5, generator=gen, dtype=torch.float64)
         ).requires_grad_(True)
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    grads = []
    for scale in (1.0, 2.0 ** 16):
        torch.manual_seed(0)
        w.grad = None
        h, _ = rbp(lambda h: torch.tanh(w @ h + x), torch.zeros_like(x),
                   method=method, backward_steps=8, backward_tol=0.0,
                   tol=1e-12, max_iter=200)
        (scale * h.pow(2).sum()).backward()
        grads.append(w.grad.clone() / scale)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=0)


@pytest.mark.parametrize("method", RBP_METHODS)
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_overflowed_gradient_passes_through_unchanged(method: str,
                                                      bad: float) -> None:
    """An inf / NaN incoming gradient (a scaler's overflow) reaches the
    parameters as inf / NaN, with no solve and no divergence warning."""
    import warnings as _warnings
    w = (0.3 * torch.eye(4)).requires_grad_(True)
    x = torch.ones(4, 1)
    h, stats = rbp(lambda h: torch.tanh(w @ h + x), torch.zeros_like(x),
                   method=method)
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")  # any warning fails the test
        (h.sum() * bad).backward()
    assert not bool(torch.isfinite(w.grad).all())
    assert stats.backward_steps == 0 and not stats.backward_diverged
