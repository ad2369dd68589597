"""Per-graph stopping that saves work: once the graphs still running hold
at most half the nodes, the forward loop evaluates F on their rows only.
The result must be exactly that of the full loop."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric.data import Batch, Data

from pyg_rbp import FixedPointIteration, RBPGatedGraphConv
from pyg_rbp.implicit.maps import RestrictableMap
from pyg_rbp.nn.adjacency import SparseMatrix
from pyg_rbp.nn.contractive_step import ContractiveStep
from pyg_rbp.nn.ggnn_step import GGNNStep


def _batch(types: int = 1, graphs: int = 24) -> Batch:
    gen = torch.Generator().manual_seed(0)
    data = []
    for i in range(graphs):
        n = 4 + (i * 5) % 17
        e = (1 + i % 4) * n
        ei = torch.randint(0, n, (2, e), generator=gen)
        data.append(Data(x=0.5 * torch.randn(n, 6, generator=gen),
                         edge_index=ei,
                         edge_type=torch.randint(0, types, (e, ),
                                                 generator=gen)))
    return Batch.from_data_list(data)


def test_restricted_matrix_is_the_submatrix() -> None:
    gen = torch.Generator().manual_seed(1)
    n, g = 9, 3
    dense = (torch.rand(n, n * g, generator=gen) < 0.3).double()
    dense *= torch.rand(n, n * g, generator=gen, dtype=torch.float64)
    m = SparseMatrix(dense.to_sparse_csr(), groups=g)
    nodes = torch.tensor([1, 4, 5, 8])
    cols = (nodes[:, None] * g + torch.arange(g)).reshape(-1)
    sub = m.restrict(nodes)
    assert sub.groups == g
    torch.testing.assert_close(sub.adj.to_dense(), dense[nodes][:, cols],
                               rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["contractive", "gru"])
@pytest.mark.parametrize("types", [1, 3])
def test_compaction_gives_the_same_state(monkeypatch, types: int,
                                         cell: str) -> None:
    b = _batch(types)
    torch.manual_seed(0)
    # compaction needs the plain iteration (Anderson mixes across graphs)
    conv = RBPGatedGraphConv(8, num_layers=300, tol=1e-6, cell=cell,
                             solver="fixed_point",
                             num_edge_types=types).double()
    step_class = ContractiveStep
    if cell == "gru":
        step_class = GGNNStep
        conv.num_layers = 80
        with torch.no_grad():
            conv.weight.mul_(0.3)
            conv.rnn.weight_hh.mul_(0.3)
    x = b.x.double()
    kw = dict(batch=b.batch, edge_type=b.edge_type if types > 1 else None)
    calls = []
    real = step_class.restrict

    def counting(self, nodes):
        calls.append(nodes.numel())
        return real(self, nodes)

    monkeypatch.setattr(step_class, "restrict", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv.solver = FixedPointIteration(compact_share=0.0)  # never
        with torch.no_grad():
            full = conv(x, b.edge_index, **kw)
        steps_full = conv.stats.graph_steps.clone()
        assert calls == []
        conv.solver = FixedPointIteration(compact_share=0.5)
        with torch.no_grad():
            compact = conv(x, b.edge_index, **kw)
    assert calls and all(c <= 0.5 * b.num_nodes for c in calls)
    assert calls == sorted(calls, reverse=True)
    torch.testing.assert_close(compact, full, rtol=0, atol=1e-12)
    assert torch.equal(conv.stats.graph_steps, steps_full)
    # with grad (the RBP training call) the loop runs under no_grad too,
    # and the gradient is that of the same fixed point
    out = conv(x, b.edge_index, **kw)
    torch.testing.assert_close(out.detach(), full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["contractive", "gru"])
def test_the_step_declares_the_protocol(cell: str) -> None:
    b = _batch()
    conv = RBPGatedGraphConv(8, num_layers=5, cell=cell)
    step, _ = conv.fixed_point_map(b.x, b.edge_index)
    assert isinstance(step, RestrictableMap)
    scatter = RBPGatedGraphConv(8, num_layers=5, aggr="max", cell=cell)
    step, _ = scatter.fixed_point_map(b.x, b.edge_index)
    assert step.restrict(torch.tensor([0, 1])) is None
