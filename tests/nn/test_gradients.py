"""RBPGatedGraphConv's gradients against three independent oracles.

In float64, on small random graphs with contractive weights (the GRU step
at half its initial scale; the contractive step with carry 0.5), the
gradients of a loss with respect to every parameter and to ``x`` from
Neumann-, CG-, fixed-point and Anderson-RBP must agree with (a) central
finite differences, (b) an exact dense solve of (I - J^T) z = g with J from
torch.autograd.functional.jacobian and (c) BPTT run to convergence, to a
relative error of at most 1e-6.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import pytest
import torch

from pyg_rbp import RBPGatedGraphConv
from tests.conftest import random_graph

RBP_METHODS = ["neumann", "cg", "fixed_point", "anderson"]
CELLS = ["contractive", "gru"]
STEPS = 150  # contraction ~0.5 per step: converged to machine precision
TOL = 1e-6

# aggregation, normalize, edge weights, edge types: the matrix path (add,
# mean), the normalised matrix and the gather/scatter path (max), untyped and
# with three edge types.
CONFIGS = {
    "add": dict(aggr="add", normalize=False, weighted=True),
    "mean": dict(aggr="mean", normalize=False, weighted=False),
    "normalize": dict(aggr="add", normalize=True, weighted=False),
    "max": dict(aggr="max", normalize=False, weighted=False),
    "typed": dict(aggr="add", normalize=False, weighted=True, types=3),
    "typed-normalize": dict(aggr="add", normalize=True, weighted=False,
                            types=3),
    "typed-max": dict(aggr="max", normalize=False, weighted=False, types=3),
}


def _problem(config: str, device: torch.device, seed: int = 0,
             cell: str = "gru"):
    torch.manual_seed(seed)
    cfg = CONFIGS[config]
    types = cfg.get("types", 1)
    # plain iteration: BPTT through the same steps as the forward
    step = dict(carry=0.5) if cell == "contractive" else {}
    conv = RBPGatedGraphConv(4, num_layers=STEPS, aggr=cfg["aggr"],
                             normalize=cfg["normalize"], tol=0.0,
                             num_edge_types=types, cell=cell,
                             solver="fixed_point", **step,
                             backward_steps=400, backward_tol=1e-15)
    conv = conv.double().to(device)
    with torch.no_grad():  # contractive weights (for the GRU step)
        for p in conv.parameters():
            p.mul_(0.5)
    x = torch.randn(6, 3, dtype=torch.float64, device=device,
                    requires_grad=True)
    edge_index = random_graph(6, 12, seed).to(device)
    weight = torch.rand(12, dtype=torch.float64, device=device) + 0.5 \
        if cfg["weighted"] else None
    graph = dict(edge_index=edge_index, edge_weight=weight)
    if types > 1:  # every type used
        graph["edge_type"] = (torch.arange(12) % types).to(device)
    target = torch.randn(6, 4, dtype=torch.float64, device=device)

    def loss(h: torch.Tensor) -> torch.Tensor:
        return (h * target).sum() + 0.5 * h.pow(2).sum()

    return conv, x, graph, loss


def _inputs(conv: RBPGatedGraphConv, x: torch.Tensor) -> List[torch.Tensor]:
    return list(conv.parameters()) + [x]


def _grads(config: str, method: str, device: torch.device,
           cell: str = "gru") -> Tuple[List[torch.Tensor], tuple]:
    conv, x, graph, loss = _problem(config, device, cell=cell)
    conv.method = method
    out = conv(x, **graph)
    return list(torch.autograd.grad(loss(out), _inputs(conv, x))), \
        (conv, x, graph, loss)


def _rel(a: List[torch.Tensor], b: List[torch.Tensor]) -> float:
    va = torch.cat([t.reshape(-1) for t in a])
    vb = torch.cat([t.reshape(-1) for t in b])
    return float((va - vb).norm() / vb.norm())


def _dense_solve(conv, x, graph, loss) -> List[torch.Tensor]:
    step, h0 = conv.fixed_point_map(x, **graph)
    h = h0.detach()
    with torch.no_grad():
        for _ in range(STEPS):
            h = step(h)
    n = h.numel()
    jac = torch.autograd.functional.jacobian(step, h).reshape(n, n)
    h_req = h.clone().requires_grad_()
    (g, ) = torch.autograd.grad(loss(h_req), h_req)
    eye = torch.eye(n, dtype=h.dtype, device=h.device)
    z = torch.linalg.solve(eye - jac.T, g.reshape(-1)).reshape(h.shape)
    return list(torch.autograd.grad(step(h), _inputs(conv, x), z,
                                    allow_unused=True))


def _finite_differences(conv, x, graph, loss, eps: float = 1e-6
                        ) -> List[torch.Tensor]:
    grads = []
    with torch.no_grad():
        for t in _inputs(conv, x):
            grad = torch.zeros_like(t)
            flat, gflat = t.view(-1), grad.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + eps
                plus = float(loss(conv(x, **graph)))
                flat[i] = old - eps
                minus = float(loss(conv(x, **graph)))
                flat[i] = old
                gflat[i] = (plus - minus) / (2 * eps)
            grads.append(grad)
    return grads


_CACHE: Dict[Tuple[str, str], List[torch.Tensor]] = {}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("method", RBP_METHODS)
def test_matches_dense_solve_and_bptt(config: str, method: str, cell: str,
                                      device: torch.device) -> None:
    grads, problem = _grads(config, method, device, cell)
    dense = _dense_solve(*problem)
    assert _rel(grads, dense) <= TOL
    bptt, _ = _grads(config, "bptt", device, cell)
    assert _rel(grads, bptt) <= TOL
    # every parameter and x gets a nonzero gradient
    assert all(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", ["add", "max", "typed"])
def test_matches_finite_differences(config: str, cell: str) -> None:
    device = torch.device("cpu")
    problem = _problem(config, device, cell=cell)
    conv = problem[0]
    conv.num_layers = 100  # FD needs only the converged value
    fd = _finite_differences(*problem)
    conv.num_layers = STEPS
    for method in RBP_METHODS:
        grads, _ = _grads(config, method, device, cell)
        assert _rel(grads, fd) <= TOL, method
        # per tensor too, so a small parameter cannot hide in the total
        for g, f in zip(grads, fd):
            assert float((g - f).norm() / f.norm()) <= 1e-5


def test_truncated_bptt_is_not_the_oracle() -> None:
    """Sanity of the oracle: a short truncation really is measurably off."""
    conv, x, graph, loss = _problem("add", torch.device("cpu"))
    exact = _dense_solve(conv, x, graph, loss)
    conv.method, conv.backward_steps = "tbptt", 1
    grads = torch.autograd.grad(loss(conv(x, **graph)), _inputs(conv, x))
    assert _rel(list(grads), exact) > 1e-3
