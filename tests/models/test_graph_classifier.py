"""RBPGraphClassifier: readouts, the PyG baseline, batching, bad options."""
from __future__ import annotations


import pytest
import torch
from torch_geometric.data import Batch, Data

from pyg_rbp.models import (GatedReadout, NoGraphConv, PygGatedGraphConv,
                            RBPGraphClassifier, no_graph_factory,
                            pyg_gated_factory)
from tests.conftest import random_graph


def _batch(types: int = 3, sizes=(5, 8, 3)) -> Batch:
    graphs = []
    for s, n in enumerate(sizes):
        gen = torch.Generator().manual_seed(s)
        ei = random_graph(n, 2 * n, s)
        graphs.append(Data(x=torch.randn(n, 4, generator=gen),
                           edge_index=ei, y=torch.tensor([s % 2]),
                           edge_type=torch.randint(0, types, (2 * n, ),
                                                   generator=gen)))
    return Batch.from_data_list(graphs)


def test_gated_readout_is_the_ggnn_formula() -> None:
    torch.manual_seed(0)
    readout = GatedReadout(6, 3)
    hx = torch.randn(7, 6)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    out = readout(hx, batch, 3)
    gate = torch.sigmoid(hx @ readout.gate.weight.T + readout.gate.bias)
    value = hx @ readout.value.weight.T + readout.value.bias
    for g in range(3):
        m = batch == g
        torch.testing.assert_close(out[g], (gate[m] * value[m]).sum(0))


@pytest.mark.parametrize("readout", ["gated", "sum", "mean"])
def test_logits_per_graph_and_gradients(readout: str) -> None:
    torch.manual_seed(0)
    data = _batch()
    model = RBPGraphClassifier(4, 16, 2, num_edge_types=3, readout=readout,
                               num_layers=50)
    out = model(data.x, data.edge_index, data.batch, data.edge_type,
                data.num_graphs)
    assert out.shape == (3, 2)
    torch.nn.functional.cross_entropy(out, data.y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())
    assert model.stats.graph_steps.shape == (3, )


def test_batched_logits_equal_single_graph_logits() -> None:
    torch.manual_seed(1)
    data = _batch()
    model = RBPGraphClassifier(4, 8, 2, num_edge_types=3, num_layers=300,
                               tol=1e-9).double()
    model.eval()
    with torch.no_grad():
        out = model(data.x.double(), data.edge_index, data.batch,
                    data.edge_type)
        for i, g in enumerate(data.to_data_list()):
            alone = model(g.x.double(), g.edge_index, None, g.edge_type)
            torch.testing.assert_close(out[i:i + 1], alone, rtol=0,
                                       atol=1e-7)


def test_per_graph_and_batch_wide_stopping_reach_the_same_point() -> None:
    torch.manual_seed(2)
    data = _batch(sizes=(3, 12, 6, 9))
    per_graph = RBPGraphClassifier(4, 8, 2, num_edge_types=3,
                                   num_layers=400, tol=1e-10).double()
    batch_wide = RBPGraphClassifier(4, 8, 2, num_edge_types=3,
                                    num_layers=400, tol=1e-10,
                                    per_graph_stopping=False).double()
    batch_wide.load_state_dict(per_graph.state_dict())
    args = (data.x.double(), data.edge_index, data.batch, data.edge_type)
    torch.testing.assert_close(per_graph(*args), batch_wide(*args),
                               rtol=0, atol=1e-7)
    # per graph: graphs stop at different steps, fewer on average than the
    # batch as a whole (whose residual norm pools the graphs, so it can stop
    # a step before the slowest graph would on its own)
    steps = per_graph.stats.graph_steps
    assert int(steps.min()) < int(steps.max())
    assert float(steps.float().mean()) < batch_wide.stats.forward_steps
    assert batch_wide.stats.graph_steps is None


def test_a_layer_of_ones_own() -> None:
    """conv= takes a module or a factory (PyG's GatedGraphConv behind our
    layer's call); the model then equals encoder -> that layer -> readout
    -> head."""
    data = _batch()
    torch.manual_seed(0)
    model = RBPGraphClassifier(4, 16, 2, conv=pyg_gated_factory(3))
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 16)
    layer = PygGatedGraphConv(16, 3)
    assert torch.equal(model.encoder.weight, encoder.weight)
    assert torch.equal(model.conv.conv.weight, layer.conv.weight)
    out = model(data.x, data.edge_index, data.batch)
    assert out.shape == (3, 2) and model.stats is None
    model.eval()
    x = model.encoder(data.x).relu()
    h = layer.eval()(x, data.edge_index)
    g = model.gated(torch.cat([h, x], -1), data.batch, 3)
    torch.testing.assert_close(model(data.x, data.edge_index, data.batch),
                               model.head(g))
    given = RBPGraphClassifier(4, 16, 2, conv=layer)
    assert given.conv is layer
    with pytest.raises(ValueError, match="not both"):
        RBPGraphClassifier(4, 16, 2, conv=layer, method="neumann")
    with pytest.raises(TypeError, match="pyg_gated_factory"):
        RBPGraphClassifier(4, 16, 2, conv="pyg")
    with pytest.raises(ValueError, match="'num_layers' must be >= 1"):
        pyg_gated_factory(0)


def test_the_graph_blind_reference_ignores_the_edges() -> None:
    """no_graph_factory: h = 0, so the model is a function of the node
    features' multiset: the same logits with the edges dropped or the
    nodes of a graph permuted, and encoder -> readout of [0, x] -> head."""
    data = _batch()
    torch.manual_seed(0)
    model = RBPGraphClassifier(4, 16, 2, conv=no_graph_factory()).eval()
    assert isinstance(model.conv, NoGraphConv) and model.stats is None
    assert not list(model.conv.parameters())
    out = model(data.x, data.edge_index, data.batch)
    empty = torch.empty(2, 0, dtype=torch.long)
    torch.testing.assert_close(model(data.x, empty, data.batch), out)
    perm = torch.arange(data.num_nodes)
    first = (data.batch == 0).nonzero().view(-1)
    perm[first] = first.flip(0)
    torch.testing.assert_close(model(data.x[perm], empty, data.batch), out)
    x = model.encoder(data.x).relu()
    g = model.gated(torch.cat([torch.zeros_like(x), x], -1), data.batch, 3)
    torch.testing.assert_close(out, model.head(g))
    # and it is not constant: the features decide
    assert float((out - model(data.x.flip(0), empty, data.batch)).abs()
                 .max()) > 1e-4


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(readout="max"), ValueError,
     "'readout' must be one of 'gated', 'sum', 'mean'"),
    (dict(conv="dgl"), TypeError, "'conv' must be a torch.nn.Module"),
    (dict(dropout=1.0), ValueError, r"'dropout' must be in \[0, 1\)"),
    (dict(num_edge_types=0), ValueError, "'num_edge_types' must be >= 1"),
    (dict(method="adjoint"), ValueError, "'method' must be one of"),
])
def test_bad_options(kwargs, err, match) -> None:
    with pytest.raises(err, match=match):
        RBPGraphClassifier(4, 16, 2, **kwargs)


def test_typed_model_needs_edge_type() -> None:
    data = _batch()
    model = RBPGraphClassifier(4, 16, 2, num_edge_types=3)
    with pytest.raises(ValueError, match="pass edge_type"):
        model(data.x, data.edge_index, data.batch)
