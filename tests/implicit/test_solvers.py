"""Forward solvers as values: each reaches the fixed point a dense solve
gives, Broyden within the steps its theory allows, per graph where the loop
stops per graph, and differentiably where autograd records it."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pyg_rbp import (Anderson, Broyden, FixedPointIteration, ForwardSolver,
                     RBPGatedGraphConv, rbp)
from pyg_rbp.implicit import SOLVER_REGISTRY, SOLVERS, resolve_solver
from pyg_rbp.implicit.forward import iterate


def _linear(n: int, rho: float, seed: int = 0, cols: int = 1):
    """F(h) = A h + b, A symmetric with eigenvalues spread over [0, rho],
    and its fixed point."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen,
                                       dtype=torch.double))
    a = q @ torch.diag(torch.linspace(0, rho, n, dtype=torch.double)) @ q.T
    b = torch.randn(n, cols, generator=gen, dtype=torch.double)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.double) - a, b)
    return (lambda h: a @ h + b), b, exact


def test_registry_names_values_and_errors() -> None:
    assert SOLVERS == ("fixed_point", "anderson", "broyden")
    assert all(SOLVER_REGISTRY[name].name == name for name in SOLVERS)
    assert resolve_solver("anderson") == Anderson()
    value = Broyden(memory=4)
    assert resolve_solver(value) is value
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.memory = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="'memory' must be >= 1"):
        Broyden(memory=0)
    with pytest.raises(ValueError, match="'lam' must be"):
        Anderson(lam=-1.0)
    with pytest.raises(ValueError, match="'solver' must be one of"):
        resolve_solver("newton")
    with pytest.raises(TypeError, match="forward solver value"):
        resolve_solver(Anderson)  # the class, not a value
    assert isinstance(FixedPointIteration(), ForwardSolver)


@pytest.mark.parametrize("solver", ["fixed_point", "anderson", "broyden",
                                    Anderson(memory=8, lam=1e-8),
                                    Broyden(memory=3)])
def test_every_solver_reaches_the_dense_fixed_point(solver) -> None:
    f, b, exact = _linear(12, 0.8, cols=3)
    h, stats = rbp(f, torch.zeros_like(b), solver=solver, tol=1e-12,
                   max_iter=500)
    assert stats.converged
    torch.testing.assert_close(h, exact, rtol=1e-9, atol=1e-10)
    assert stats.solver == resolve_solver(solver).name


def test_broyden_on_a_linear_map_within_twice_its_dimension() -> None:
    """Gay (1979): on a linear system of dimension n, Broyden's good method
    terminates within 2n steps (plus the first, plain one); plain iteration
    at rho = 0.99 needs thousands."""
    n = 8
    f, b, exact = _linear(n, 0.99, seed=1)
    h = iterate(f, torch.zeros_like(b), 2 * n + 1, 1e-10, Broyden(memory=2 * n),
                None, 1)
    assert bool(h.done.all()) and h.steps <= 2 * n + 1
    torch.testing.assert_close(h.h, exact, rtol=1e-8, atol=1e-9)
    plain = iterate(f, torch.zeros_like(b), 200, 1e-10, "fixed_point", None,
                    1)
    assert not bool(plain.done.all())


def test_broyden_per_graph_does_not_depend_on_the_batch() -> None:
    """Two graphs batched take each the iterates they take alone."""
    fa, ba, exact_a = _linear(5, 0.9, seed=2, cols=4)
    fb, bb, exact_b = _linear(7, 0.5, seed=3, cols=4)
    # the state's first dimension indexes nodes: graph a's 5, then b's 7
    # (the maps act on the node dimension, block-diagonally)

    def f(h: torch.Tensor) -> torch.Tensor:
        return torch.cat([fa(h[:5]), fb(h[5:])])
    batch = torch.tensor([0] * 5 + [1] * 7)
    h0 = torch.zeros(12, 4, dtype=torch.double)
    both = iterate(f, h0, 100, 1e-11, "broyden", batch, 2)
    alone_a = iterate(fa, h0[:5], 100, 1e-11, "broyden", None, 1)
    alone_b = iterate(fb, h0[5:], 100, 1e-11, "broyden", None, 1)
    assert both.graph_steps.tolist() == [alone_a.steps, alone_b.steps]
    torch.testing.assert_close(both.h[:5], alone_a.h, rtol=1e-12,
                               atol=1e-13)
    torch.testing.assert_close(both.h[5:], alone_b.h, rtol=1e-12,
                               atol=1e-13)
    torch.testing.assert_close(both.h, torch.cat([exact_a, exact_b]),
                               rtol=1e-9, atol=1e-10)


def test_backpropagation_through_broyden_is_exact() -> None:
    """BPTT records the mixer's operations: autograd through a fixed number
    of Broyden steps passes gradcheck against finite differences."""
    torch.manual_seed(0)
    w = (0.4 * torch.randn(4, 4, dtype=torch.double)).requires_grad_(True)
    x = torch.randn(4, 2, dtype=torch.double, requires_grad=True)

    def out(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h, _ = rbp(lambda h: torch.tanh(w @ h + x), torch.zeros_like(x),
                   method="bptt", solver="broyden", tol=0.0, max_iter=6)
        return h
    assert torch.autograd.gradcheck(out, (w, x))


def test_the_layer_takes_solver_values() -> None:
    """A solver value in the layer: the implicit gradient equals the plain
    iteration's to the tolerance, with fewer steps than plain iteration."""
    torch.manual_seed(0)
    x, edge_index = torch.randn(30, 8), torch.randint(0, 30, (2, 90))
    grads, steps = {}, {}
    for solver in ("fixed_point", Broyden(memory=6), Anderson(memory=5)):
        torch.manual_seed(1)
        conv = RBPGatedGraphConv(8, num_layers=500, tol=1e-10,
                                 backward_tol=1e-10,
                                 solver=solver).double()
        out = conv(x.double(), edge_index)
        (grad, ) = torch.autograd.grad(out.pow(2).sum(), conv.weight)
        key = resolve_solver(solver).name
        grads[key], steps[key] = grad, conv.stats.forward_steps
        assert conv.stats.converged and conv.stats.solver == key
    torch.testing.assert_close(grads["broyden"], grads["fixed_point"],
                               rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grads["anderson"], grads["fixed_point"],
                               rtol=1e-6, atol=1e-8)
    assert steps["broyden"] < steps["fixed_point"]


def test_engine_settings_are_fields_not_globals() -> None:
    """The compaction threshold is the plain solver's field, the hybrid's
    adjoint cap factor the hybrid's; each checked when made."""
    from pyg_rbp import CG, Hybrid
    assert FixedPointIteration().compact_share == 0.5
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="'compact_share' must be"):
            FixedPointIteration(compact_share=bad)
    assert Hybrid(adjoint=CG(steps=10)).for_forward(30) == CG(steps=60)
    assert Hybrid(adjoint=CG(steps=10), step_factor=3).for_forward(30) == \
        CG(steps=90)
    assert Hybrid(adjoint=CG(steps=10), step_factor=0).for_forward(30) == \
        CG(steps=10)
    with pytest.raises(ValueError, match="'step_factor' must be >= 0"):
        Hybrid(step_factor=-1)
