"""Mixed precision: the engine and the layers under CPU bfloat16 autocast,
and a bfloat16 model."""
from __future__ import annotations

import warnings

import pytest
import torch

from pyg_rbp import ConvergenceWarning, RBPGatedGraphConv, rbp
from pyg_rbp.implicit.precision import switch_tol
from tests.conftest import random_graph

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def _problem(types: int = 1, cell: str = "contractive"):
    torch.manual_seed(0)
    x = torch.randn(60, 8)
    ei = random_graph(60, 240)
    et = torch.arange(240) % types if types > 1 else None
    conv = RBPGatedGraphConv(8, num_layers=200, normalize=True,
                             num_edge_types=types, cell=cell)
    return conv, x, ei, et


@pytest.mark.parametrize("cell", ["contractive", "gru"])
@pytest.mark.parametrize("types", [1, 3])
@pytest.mark.parametrize("method", ["neumann", "cg", "bptt"])
def test_autocast_matches_float32(types: int, method: str, cell: str) -> None:
    """Under bf16 autocast the layer iterates in bf16, finishes in float32
    to the same tol, and gives float32's fixed point and gradients."""
    conv, x, ei, et = _problem(types, cell)
    conv.method = method
    ref = conv(x, ei, edge_type=et)
    ref.pow(2).sum().backward()
    ref_grads = [p.grad.clone() for p in conv.parameters()]
    conv.zero_grad()
    with torch.autocast(**BF16):
        out = conv(x, ei, edge_type=et)
    assert out.dtype == torch.float32  # the state stays float32
    stats = conv.stats
    assert stats.converged is True and stats.forward_residual <= 1e-5
    assert 0 < stats.low_precision_steps < stats.forward_steps
    out.pow(2).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    for g, r in zip((p.grad for p in conv.parameters()), ref_grads):
        assert float((g - r).norm() / r.norm()) < 1e-3


def test_tol_above_the_switch_stays_in_low_precision() -> None:
    conv, x, ei, _ = _problem()
    conv.tol = 2 * switch_tol(torch.bfloat16)
    with torch.autocast(**BF16):
        out = conv(x, ei)
    assert conv.stats.low_precision_steps == conv.stats.forward_steps - 1
    assert conv.stats.forward_residual <= conv.tol
    out.sum().backward()  # the recorded step is float32, backward too
    assert all(p.grad.dtype == torch.float32 for p in conv.parameters())


def test_engine_keeps_the_state_dtype_and_switches() -> None:
    torch.manual_seed(1)
    w = 0.05 * torch.randn(16, 16)  # a contraction
    b = torch.randn(32, 16)
    seen = []

    def f(h):
        prod = h @ w  # under autocast: a bf16 product
        seen.append(prod.dtype)
        return torch.tanh(prod + b)

    with torch.autocast(**BF16):
        h, stats = rbp(f, torch.zeros(32, 16), tol=1e-6, max_iter=200)
    assert h.dtype == torch.float32
    assert torch.bfloat16 in seen and seen[-1] == torch.float32
    assert stats.forward_residual <= 1e-6
    exact, _ = rbp(f, torch.zeros(32, 16), tol=1e-6, max_iter=200)
    torch.testing.assert_close(h, exact, atol=1e-5, rtol=1e-5)


def test_bfloat16_model_warns_about_an_unreachable_tol() -> None:
    conv = RBPGatedGraphConv(8, num_layers=30).to(torch.bfloat16)
    x = torch.randn(20, 8, dtype=torch.bfloat16)
    ei = random_graph(20, 60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = conv(x, ei)
    assert out.dtype == torch.bfloat16
    texts = [str(w.message) for w in caught
             if issubclass(w.category, ConvergenceWarning)]
    assert any("below what a torch.bfloat16 state can resolve" in t
               for t in texts)
    # at a reachable tol it converges, quietly, and trains
    conv.tol = 2 * switch_tol(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        out = conv(x, ei)
    out.float().sum().backward()
    assert conv.weight.grad.dtype == torch.bfloat16


def test_no_tf32_restores_the_settings() -> None:
    """The float32 finish switches TF32 off and puts the user's setting back
    (checked on the flags, which exist on CPU-only builds too)."""
    from pyg_rbp.implicit.precision import no_tf32
    matmul = torch.backends.cuda.matmul
    key = "fp32_precision" if hasattr(matmul, "fp32_precision") else \
        "allow_tf32"
    before = getattr(matmul, key)
    tf32 = "tf32" if key == "fp32_precision" else True
    setattr(matmul, key, tf32)
    try:
        with no_tf32():
            assert getattr(matmul, key) in ("ieee", False)
        assert getattr(matmul, key) == tf32
    finally:
        setattr(matmul, key, before)


def _autocast_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cpu" else torch.float16


@pytest.mark.parametrize("types", [1, 3])
def test_constants_cast_once_per_call(device: torch.device,
                                      types: int) -> None:
    """Under autocast the step keeps low-precision copies of its constants
    for its steps without grad (one cast per call, not per step): they give
    exactly the values of autocast's own per-op casts. Steps with grad use
    the float32 constants, so BPTT's weight gradients are summed over the
    steps in float32 (a shared low-precision copy would sum them in bf16).
    (The GRU step's seven GEMMs per step; the contractive step has one.)"""
    conv, x, ei, et = _problem(types, cell="gru")
    conv, x, ei = conv.to(device), x.to(device), ei.to(device)
    et = None if et is None else et.to(device)
    dtype = _autocast_dtype(device)
    h = torch.randn_like(x)
    with torch.autocast(device_type=device.type, dtype=dtype):
        step, _ = conv.fixed_point_map(x, ei, edge_type=et)
        assert step._low is not None and step._low["w_m_rz"].dtype == dtype
        assert step._low["w_m_rz"].grad_fn is None
        with torch.no_grad():
            fast = step(step(h))
            step._low = {k: (getattr(step, k) if k != "dtype" else v)
                         for k, v in step._low.items()}  # per-op casts
            slow = step(step(h))
        torch.testing.assert_close(fast, slow, rtol=0, atol=0)
        recorded = step(step(h))  # with grad: the float32 constants
    torch.testing.assert_close(recorded.detach(), fast, rtol=0, atol=0)
    recorded.float().pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for p in conv.parameters())
