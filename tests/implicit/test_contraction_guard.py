"""The automatic contraction safeguard of rbp(): acts only on training calls
whose forward did not converge, and adds exactly w * max(0, rho^2 - b^2)."""
from __future__ import annotations

import warnings

import pytest
import torch

from pyg_rbp import RBPGatedGraphConv, rbp

N = 6


def _linear(scale: float):
    """F(h) = W h + x with W = scale * Q (Q orthogonal): every singular value
    and eigenvalue modulus of J = W is ``scale``."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(N, N, generator=gen,
                                       dtype=torch.float64))
    w = (scale * q).requires_grad_(True)
    x = torch.randn(N, 3, generator=gen, dtype=torch.float64)
    return w, x


def _grad(w, x, **kwargs):
    w.grad = None
    h, stats = rbp(lambda h: w @ h + x, torch.zeros_like(x), **kwargs)
    h.sum().backward()
    return w.grad.clone(), stats


def test_unconverged_call_adds_the_hinge_gradient() -> None:
    w, x = _linear(1.2)  # expansive: never converges
    opts = dict(max_iter=5, tol=1e-8, backward_steps=3, backward_tol=0)
    with pytest.warns(UserWarning):
        plain, s0 = _grad(w, x, contraction_bound=None, **opts)
        guarded, s1 = _grad(w, x, contraction_bound=0.9,
                            contraction_weight=10.0, **opts)
    assert s0.contraction_penalty is None
    # rho^2 = 1.44 exactly for a scaled orthogonal map, whatever the power
    # iteration's start: 10 * (1.44 - 0.81)
    assert s1.contraction_penalty == pytest.approx(6.3, rel=1e-9)
    # d/dW ||W^T v||^2 = 2 v v^T W for the unit vector v of the estimate, so
    # <extra gradient, W> = 10 * 2 * v^T W W^T v = 20 * 1.44
    extra = guarded - plain
    assert float((extra * w.detach()).sum()) == pytest.approx(28.8,
                                                              rel=1e-9)
    # a step against it shrinks the map (along v; the others stay 1.2)
    step = w.detach() - 1e-3 * extra
    assert torch.linalg.matrix_norm(step) < torch.linalg.matrix_norm(w)


def test_converged_calls_and_other_methods_are_untouched() -> None:
    w, x = _linear(0.5)  # a contraction: converges
    plain, _ = _grad(w, x, contraction_bound=None)
    guarded, stats = _grad(w, x, contraction_bound=0.9)
    assert stats.converged and stats.contraction_penalty is None
    torch.testing.assert_close(guarded, plain, rtol=0, atol=0)
    w, x = _linear(1.2)
    for kwargs in ({"method": "bptt"}, {"method": "tbptt"}, {"tol": 0.0}):
        with pytest.warns(UserWarning) if "method" in kwargs else \
                _no_warning():
            _, stats = _grad(w, x, max_iter=5, contraction_bound=0.9,
                             **kwargs)
        assert stats.contraction_penalty is None
    with torch.no_grad(), pytest.warns(UserWarning):
        _, stats = rbp(lambda h: w @ h + x, torch.zeros_like(x),
                       max_iter=5, contraction_bound=0.9)
    assert stats.contraction_penalty is None


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_bad_bounds_are_refused() -> None:
    w, x = _linear(0.5)
    with pytest.raises(ValueError, match=r"'contraction_bound' must be in"):
        rbp(lambda h: w @ h + x, torch.zeros_like(x), contraction_bound=1.0)
    with pytest.raises(ValueError, match=r"'contraction_weight' must be a"):
        rbp(lambda h: w @ h + x, torch.zeros_like(x), contraction_weight=-1.)
    with pytest.raises(ValueError, match=r"'contraction_bound' must be in"):
        RBPGatedGraphConv(8, contraction_bound=0.0, cell="gru")
    # the contractive step has no safeguard: asking for one is an error
    with pytest.raises(ValueError, match=r"'contraction_bound' is the GRU "
                                         r"step's safeguard"):
        RBPGatedGraphConv(8, contraction_bound=0.9)


def test_layer_guards_an_unconverged_implicit_call() -> None:
    # with an implicit method by name, an unconverged training call carries
    # the safeguard's penalty (bound 0.99, weight 10 by default)
    conv = RBPGatedGraphConv(8, num_layers=3, tol=1e-12, method="neumann",
                             cell="gru")
    x = torch.randn(10, 8)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    with pytest.warns(UserWarning, match="did not reach tol"):
        conv(x, edge_index).sum().backward()
    assert conv.stats.contraction_penalty is not None
    explicit = RBPGatedGraphConv(8, num_layers=3, tol=1e-12, cell="gru",
                                 method="neumann", contraction_bound=0.99,
                                 contraction_weight=10.0)
    explicit.load_state_dict(conv.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for layer in (conv, explicit):
            torch.manual_seed(7)  # the power iteration's start
            layer(x, edge_index)
    assert conv.stats.contraction_penalty == \
        explicit.stats.contraction_penalty
    off = RBPGatedGraphConv(8, num_layers=3, tol=1e-12, method="neumann",
                            contraction_bound=None, cell="gru")
    with pytest.warns(UserWarning):
        off(x, edge_index).sum().backward()
    assert off.stats.contraction_penalty is None


def test_layer_default_unrolls_instead_of_guarding() -> None:
    # the default (hybrid) back-propagates through an unconverged call's
    # steps: exact, so no safeguard acts on it
    conv = RBPGatedGraphConv(8, num_layers=3, tol=1e-12)
    x = torch.randn(10, 8)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    with pytest.warns(UserWarning, match="did not reach tol"):
        conv(x, edge_index).sum().backward()
    assert conv.stats.backward_method == "bptt"
    assert conv.stats.contraction_penalty is None
