"""Typed edges in RBPGatedGraphConv (the original GGNN's edge types; PyG #1670).

Gradients with types are checked against finite differences, a dense solve
and BPTT in tests/nn/test_gradients.py, and the closed-form J^T v in
tests/nn/test_ggnn_step.py; here: the step itself, equivalences, batching,
one-time graph work and bad input.
"""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_torch_coo_tensor

from pyg_rbp import RBPGatedGraphConv
from tests.conftest import random_graph


def _typed_graph(n: int = 9, e: int = 30, k: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_graph(n, e, seed)
    edge_type = torch.randint(0, k, (e, ), generator=gen)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return x, edge_index, edge_type


def _hand_step(conv: RBPGatedGraphConv, x, edge_index, edge_type,
               edge_weight=None) -> torch.Tensor:
    """One step written from the formula: m_i = AGG_j e_ji h_j Theta_t(j,i)."""
    n, c, k = x.size(0), conv.out_channels, conv.num_edge_types
    h = torch.cat([x, x.new_zeros(n, c - x.size(1))], dim=1)
    w = torch.ones(edge_index.size(1), dtype=x.dtype) if edge_weight is None \
        else edge_weight
    ei, et = edge_index, edge_type
    if conv.normalize:  # a self-loop per node, of the extra type k
        loops = torch.arange(n)
        ei = torch.cat([ei, torch.stack([loops, loops])], dim=1)
        et = torch.cat([et, torch.full((n, ), k)])
        w = torch.cat([w, torch.ones(n, dtype=x.dtype)])
        deg = torch.zeros(n, dtype=x.dtype).index_add_(0, ei[1], w)
        w = deg[ei[0]].rsqrt() * w * deg[ei[1]].rsqrt()
    msg = torch.einsum("ec,ecd->ed", h[ei[0]], conv.weight[et]) * w[:, None]
    if conv.aggr == "max":
        m = torch.full((n, c), float("-inf"), dtype=x.dtype)
        m = m.index_reduce_(0, ei[1], msg, "amax", include_self=True)
        m[torch.isinf(m)] = 0.0
    else:
        m = torch.zeros(n, c, dtype=x.dtype).index_add_(0, ei[1], msg)
        if conv.aggr == "mean":
            cnt = torch.zeros(n, dtype=x.dtype).index_add_(
                0, ei[1], torch.ones(ei.size(1), dtype=x.dtype))
            m = m / cnt.clamp_min(1)[:, None]
    return conv.rnn(torch.cat([m, h], dim=1), h)


@pytest.mark.parametrize("aggr, normalize, weighted", [
    ("add", False, False), ("add", False, True), ("mean", False, False),
    ("max", False, False), ("add", True, False), ("add", True, True)])
def test_one_step_matches_the_formula(aggr, normalize, weighted) -> None:
    torch.manual_seed(0)
    x, edge_index, edge_type = _typed_graph()
    conv = RBPGatedGraphConv(5, num_layers=1, tol=0.0, aggr=aggr,
                             normalize=normalize, num_edge_types=3,
                             cell="gru").double()
    w = torch.rand(30, dtype=torch.float64) if weighted else None
    expected = _hand_step(conv, x, edge_index, edge_type, w)
    out = conv(x, edge_index, w, edge_type=edge_type)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_weight_shape_and_repr() -> None:
    conv = RBPGatedGraphConv(8, num_layers=5, num_edge_types=4)
    assert conv.weight.shape == (4, 8, 8)
    assert repr(conv) == \
        "RBPGatedGraphConv(8, num_layers=5, num_edge_types=4, method=hybrid)"
    # normalize's self-loops get a weight of their own
    assert RBPGatedGraphConv(8, num_edge_types=4, normalize=True) \
        .weight.shape == (5, 8, 8)
    # one type is the untyped layer, weight and repr included
    one = RBPGatedGraphConv(8, num_layers=5, num_edge_types=1)
    assert one.weight.shape == (8, 8)
    assert repr(one) == "RBPGatedGraphConv(8, num_layers=5, method=hybrid)"


@pytest.mark.parametrize("normalize", [False, True])
def test_one_type_equals_the_untyped_layer(normalize: bool) -> None:
    torch.manual_seed(1)
    x, edge_index, _ = _typed_graph()
    conv = RBPGatedGraphConv(5, num_layers=40, normalize=normalize).double()
    ref = conv(x, edge_index)
    zeros = torch.zeros(edge_index.size(1), dtype=torch.long)
    torch.testing.assert_close(conv(x, edge_index, edge_type=zeros), ref,
                               rtol=0, atol=0)
    # k types all carrying the untyped Theta are the untyped layer too
    typed = RBPGatedGraphConv(5, num_layers=40, num_edge_types=3,
                              normalize=normalize).double()
    state = dict(conv.state_dict())
    state["weight"] = conv.weight.detach().expand_as(typed.weight).clone()
    typed.load_state_dict(state)
    mixed = torch.randint(0, 3, (edge_index.size(1), ))
    torch.testing.assert_close(typed(x, edge_index, edge_type=mixed), ref,
                               rtol=0, atol=1e-12)


def test_types_change_the_output() -> None:
    """The types are not ignored: relabelling edges changes the state."""
    torch.manual_seed(2)
    x, edge_index, edge_type = _typed_graph()
    conv = RBPGatedGraphConv(5, num_layers=40, num_edge_types=3).double()
    a = conv(x, edge_index, edge_type=edge_type)
    b = conv(x, edge_index, edge_type=(edge_type + 1) % 3)
    assert float((a - b).abs().max()) > 1e-3


def test_a_graph_alone_equals_its_rows_in_a_batch() -> None:
    torch.manual_seed(3)
    graphs = []
    for s, n in enumerate([4, 7, 5]):
        x, ei, et = _typed_graph(n, 3 * n, k=4, seed=s)
        graphs.append(Data(x=x, edge_index=ei, edge_type=et))
    batch = Batch.from_data_list(graphs)
    conv = RBPGatedGraphConv(6, num_layers=300, tol=1e-10,
                             num_edge_types=4).double()
    out = conv(batch.x, batch.edge_index, batch=batch.batch,
               edge_type=batch.edge_type)
    assert bool(conv.stats.converged.all())
    for i, g in enumerate(graphs):
        alone = conv(g.x, g.edge_index, edge_type=g.edge_type)
        torch.testing.assert_close(out[batch.batch == i], alone, rtol=0,
                                   atol=1e-8)


@pytest.mark.parametrize("cell, matrices", [("gru", 1), ("contractive", 2)])
def test_typed_graph_work_is_built_once_per_call(coo_builds, cell: str,
                                                 matrices: int) -> None:
    """One typed matrix per call (the contractive step also builds the
    untyped carry matrix), not one per step."""
    x, edge_index, edge_type = _typed_graph()
    conv = RBPGatedGraphConv(5, num_layers=40, tol=0.0, normalize=True,
                             num_edge_types=3, cell=cell).double()
    conv(x, edge_index, edge_type=edge_type).sum().backward()
    assert conv.stats.forward_steps == 40
    assert coo_builds["n"] == matrices


def test_training_memory_with_types_does_not_grow_with_steps() -> None:
    from pyg_rbp.utils import SavedTensorMeter
    x, edge_index, edge_type = _typed_graph(60, 200, k=4)

    def saved(steps: int) -> int:
        conv = RBPGatedGraphConv(8, num_layers=steps, tol=0.0,
                                 num_edge_types=4, method="neumann").double()
        with SavedTensorMeter() as meter:
            conv(x, edge_index, edge_type=edge_type)
        return meter.bytes

    assert saved(10) == saved(80)


E = 30
BAD_CALLS = [
    ("missing", dict(edge_type=None), ValueError,
     r"num_edge_types=3; pass edge_type"),
    ("float", dict(edge_type=torch.zeros(E)), TypeError,
     "'edge_type' must have an integer dtype"),
    ("bool", dict(edge_type=torch.zeros(E, dtype=torch.bool)), TypeError,
     "'edge_type' must have an integer dtype"),
    ("list", dict(edge_type=[0] * E), TypeError,
     "'edge_type' must be a torch.Tensor"),
    ("length", dict(edge_type=torch.zeros(E - 1, dtype=torch.long)),
     ValueError, r"'edge_type' must have shape \[30\]"),
    ("2-d", dict(edge_type=torch.zeros(1, E, dtype=torch.long)), ValueError,
     r"'edge_type' must have shape \[30\]"),
    ("too large", dict(edge_type=torch.full((E, ), 3)), ValueError,
     r"values in \[0, 3\) for num_edge_types=3 \(got values in \[3, 3\]\)"),
    ("negative", dict(edge_type=torch.full((E, ), -1)), ValueError,
     r"values in \[0, 3\)"),
]


@pytest.mark.parametrize("what, kwargs, err, match", BAD_CALLS,
                         ids=[c[0] for c in BAD_CALLS])
def test_bad_edge_type(what, kwargs, err, match) -> None:
    x, edge_index, edge_type = _typed_graph()
    conv = RBPGatedGraphConv(5, num_layers=5, num_edge_types=3).double()
    before = [p.detach().clone() for p in conv.parameters()]
    call = dict(x=x, edge_index=edge_index, edge_type=edge_type)
    call.update(kwargs)
    with pytest.raises(err, match=match):
        conv(**call)
    assert all(torch.equal(a, b) for a, b in zip(before, conv.parameters()))


def test_sparse_adjacency_with_types_is_refused() -> None:
    x, edge_index, edge_type = _typed_graph()
    conv = RBPGatedGraphConv(5, num_layers=5, num_edge_types=3).double()
    adj_t = to_torch_coo_tensor(edge_index.flip(0), size=9)
    with pytest.raises(ValueError, match=r"edge_type only with edge_index "
                                         r"as a \[2, E\] tensor"):
        conv(x, adj_t, edge_type=edge_type)
    # without types, the untyped layer still takes it
    RBPGatedGraphConv(5, num_layers=5).double()(x, adj_t)


def test_bad_num_edge_types() -> None:
    with pytest.raises(ValueError, match="'num_edge_types' must be >= 1"):
        RBPGatedGraphConv(5, num_edge_types=0)
    with pytest.raises(TypeError, match="'num_edge_types' must be an int"):
        RBPGatedGraphConv(5, num_edge_types=2.0)
