"""RBPGatedGraphConv as a PyG user meets it: formats, shapes, errors, memory."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GatedGraphConv
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import to_torch_coo_tensor

from pyg_rbp import ConvergenceWarning, RBPGatedGraphConv, RBPStats
from pyg_rbp.utils import SavedTensorMeter, tensor_bytes
from tests.conftest import random_graph


def _graph(device: torch.device):
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]],
                              device=device)
    x = torch.randn(4, 3, device=device)
    return x, edge_index


def test_repr_and_defaults() -> None:
    conv = RBPGatedGraphConv(32, num_layers=3)
    assert repr(conv) == "RBPGatedGraphConv(32, num_layers=3, method=hybrid)"
    assert repr(RBPGatedGraphConv(8, 5, method="cg")) == \
        "RBPGatedGraphConv(8, num_layers=5, method=cg)"
    assert repr(RBPGatedGraphConv(8, 5, cell="gru")) == \
        "RBPGatedGraphConv(8, num_layers=5, cell=gru, method=hybrid)"
    assert conv.cell == "contractive" and conv.solver == "anderson"
    assert conv.contraction_bound is None
    gru = RBPGatedGraphConv(8, cell="gru")
    assert gru.solver == "fixed_point" and gru.contraction_bound == 0.99
    conv = RBPGatedGraphConv(16, tol=0.0)
    assert conv.stats is None
    # the defaults at work: 100 propagation steps; tol=0 never counts as
    # converged, so the hybrid back-propagates through all of them
    x, edge_index = torch.randn(6, 16), torch.tensor([[0, 1, 2], [1, 2, 0]])
    conv(x, edge_index).sum().backward()
    assert conv.stats.forward_steps == 100
    assert conv.stats.method == "hybrid"
    assert conv.stats.backward_method == "bptt"
    assert conv.stats.backward_steps == 100
    # converged: the implicit gradient, its adjoint solved to tolerance by
    # Anderson-RBP (the contractive step's default, to the forward's tol)
    # or Neumann-RBP (GRU, to 1e-6)
    for cell, adjoint, tol in (("contractive", "anderson", 1e-5),
                               ("gru", "neumann", 1e-6)):
        conv = RBPGatedGraphConv(16, cell=cell)
        assert conv.backward_tol == tol
        conv(x, edge_index).sum().backward()
        assert conv.stats.converged
        assert conv.stats.backward_method == adjoint
        assert conv.stats.backward_converged is True
        assert conv.stats.backward_residual <= tol
    assert RBPGatedGraphConv(16, tol=1e-3).backward_tol == 1e-3
    assert RBPGatedGraphConv(16, tol=0.0).backward_tol == 1e-6
    assert RBPGatedGraphConv(16, backward_tol=1e-9).backward_tol == 1e-9


def test_same_positional_arguments_as_gated_graph_conv() -> None:
    ours = RBPGatedGraphConv(16, 4, "mean", False)
    theirs = GatedGraphConv(16, 4, "mean", False)
    assert ours.out_channels == theirs.out_channels == 16
    assert ours.num_layers == theirs.num_layers == 4
    assert ours.aggr == theirs.aggr == "mean"
    assert ours.lin.bias is None and ours.gate_bias is None
    assert theirs.rnn.bias_ih is None
    gru = RBPGatedGraphConv(16, 4, "mean", False, cell="gru")
    assert gru.rnn.bias_ih is None


def test_output_shape_padding_and_stats(device: torch.device) -> None:
    x, edge_index = _graph(device)
    conv = RBPGatedGraphConv(8, num_layers=300).to(device)
    out = conv(x, edge_index)
    assert out.shape == (4, 8)
    assert isinstance(conv.stats, RBPStats)
    assert conv.stats.converged is True
    assert 1 < conv.stats.forward_steps < 300
    out.sum().backward()
    assert conv.stats.backward_steps is not None
    assert conv.stats.backward_residual is not None
    # Padding: a narrower x equals x with explicit zero columns.
    padded = torch.cat([x, x.new_zeros(4, 5)], dim=1)
    torch.testing.assert_close(conv(x, edge_index), conv(padded, edge_index))


def test_output_is_a_fixed_point(device: torch.device) -> None:
    x, edge_index = _graph(device)
    conv = RBPGatedGraphConv(8, num_layers=200, tol=1e-6).to(device)
    with torch.no_grad():
        out = conv(x, edge_index)
        step, _ = conv.fixed_point_map(x, edge_index)
        res = (step(out) - out).norm() / out.norm()
    assert float(res) < 1e-5


def test_reset_parameters() -> None:
    for kwargs in (dict(gate="input"), dict(cell="gru")):
        conv = RBPGatedGraphConv(8, **kwargs)
        # the carry gate starts at `carry`: its bias and weights at zero
        drawn = [(n, p) for n, p in conv.named_parameters()
                 if not n.startswith("gate_")]
        before = [p.detach().clone() for _, p in drawn]
        with torch.no_grad():
            for p in conv.parameters():
                p.add_(1.0)
        conv.reset_parameters()
        assert all(not torch.equal(a, p) for a, (_, p) in zip(before, drawn))
        bound = 1 / 8 ** 0.5
        assert float(conv.weight.detach().abs().max()) <= bound
    conv = RBPGatedGraphConv(8, gate="input")
    with torch.no_grad():
        conv.gate_bias.add_(1.0)
        conv.gate_weight.add_(1.0)
    conv.reset_parameters()
    assert float(conv.gate_bias.abs().sum()) == 0
    assert float(conv.gate_weight.abs().sum()) == 0


def test_adjacency_formats_agree(device: torch.device) -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4, device=device)
    edge_index = random_graph(6, 14).to(device)
    weight = torch.rand(14, device=device)
    conv = RBPGatedGraphConv(4, num_layers=30, tol=0.0).to(device)
    ref = conv(x, edge_index, weight)
    # torch.sparse adj_t: rows are targets, columns sources (PyG's layout)
    adj_t = to_torch_coo_tensor(edge_index.flip(0), weight, size=6)
    torch.testing.assert_close(conv(x, adj_t), ref)
    torch.testing.assert_close(conv(x, adj_t.to_sparse_csr()), ref)
    if WITH_TORCH_SPARSE:
        sp = SparseTensor.from_edge_index(edge_index.flip(0), weight,
                                          sparse_sizes=(6, 6))
        torch.testing.assert_close(conv(x, sp), ref)
    # The gather/scatter path (edge weights that require grad) agrees too.
    w = weight.clone().requires_grad_()
    out = conv(x, edge_index, w)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert w.grad is not None and float(w.grad.abs().sum()) > 0


@pytest.mark.parametrize("aggr", ["add", "mean", "max"])
def test_one_step_matches_a_hand_written_gru(aggr: str) -> None:
    """With num_layers=1 the layer is one GRU step on [A(hW), x] and h0 = x."""
    torch.manual_seed(1)
    x = torch.randn(5, 6)
    edge_index = random_graph(5, 9, seed=3)
    conv = RBPGatedGraphConv(6, num_layers=1, aggr=aggr, tol=0.0, cell="gru")
    msg = x @ conv.weight
    src, dst = edge_index
    if aggr == "max":
        m = torch.full_like(msg, float("-inf"))
        m = m.index_reduce_(0, dst, msg[src], "amax", include_self=True)
        m[torch.isinf(m)] = 0.0
    else:
        m = torch.zeros_like(msg).index_add_(0, dst, msg[src])
        if aggr == "mean":
            deg = torch.zeros(5).index_add_(0, dst, torch.ones(9)).clamp_min(1)
            m = m / deg.unsqueeze(-1)
    expected = conv.rnn(torch.cat([m, x], dim=-1), x)
    torch.testing.assert_close(conv(x, edge_index), expected)


def test_normalize_uses_symmetric_normalisation() -> None:
    torch.manual_seed(2)
    x = torch.randn(4, 3)
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    conv = RBPGatedGraphConv(3, num_layers=1, normalize=True, tol=0.0,
                             cell="gru")
    a = torch.zeros(4, 4)
    a[edge_index[1], edge_index[0]] = 1.0
    a = a + torch.eye(4)
    d = a.sum(1).pow(-0.5)
    m = (d[:, None] * a * d[None, :]) @ (x @ conv.weight)
    expected = conv.rnn(torch.cat([m, x], dim=-1), x)
    torch.testing.assert_close(conv(x, edge_index), expected)
    with pytest.raises(ValueError, match="normalize=True only with aggr='add'"):
        RBPGatedGraphConv(3, aggr="mean", normalize=True)


def test_graph_work_is_built_once_per_call(coo_builds) -> None:
    x, edge_index = _graph(torch.device("cpu"))
    conv = RBPGatedGraphConv(8, num_layers=40, tol=0.0, normalize=True)
    conv(x, edge_index).sum().backward()
    assert conv.stats.forward_steps == 40
    assert coo_builds["n"] == 1


@pytest.mark.slow
def test_drop_in_replacement_trains() -> None:
    """Swap GatedGraphConv for RBPGatedGraphConv in a model; nothing else
    changes, and the model learns a node labelling. The label here is a
    node's own feature; the contractive step starts out propagating (its
    gate carries the neighbours' states), so it needs more optimiser steps
    than PyG's 30-step GRU to learn to keep a node's own input: loss 0.26
    after 100 Adam steps (PyG's 0.011), 0.0015 after 300."""
    torch.manual_seed(0)
    num_nodes = 40
    edge_index = random_graph(num_nodes, 120, seed=4)
    x = torch.randn(num_nodes, 5)
    y = (x[:, 0] > 0).long()

    class Net(torch.nn.Module):
        def __init__(self, conv_cls):
            super().__init__()
            self.conv = conv_cls(16, 30)
            self.lin = torch.nn.Linear(16, 2)

        def forward(self, x, edge_index):
            return self.lin(self.conv(x, edge_index).relu())

    def train(conv_cls) -> tuple:
        torch.manual_seed(0)
        model = Net(conv_cls)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        losses = []
        for _ in range(300):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x, edge_index), y)
            loss.backward()
            opt.step()
            losses.append(float(loss))
        acc = float((model(x, edge_index).argmax(-1) == y).float().mean())
        return losses, acc

    train(GatedGraphConv)  # the model as users have it today runs ...
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        losses, acc = train(RBPGatedGraphConv)  # ... and so does the swap
    assert losses[-1] < 0.1 * losses[0]
    assert acc >= 0.95
    # the default's implicit gradient trains as back-propagation through
    # the layer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bptt_losses, _ = train(lambda *a: RBPGatedGraphConv(*a,
                                                            method="bptt"))
    assert losses[-1] < 2 * bptt_losses[-1] + 1e-3


def test_batched_graphs_converge_per_graph() -> None:
    torch.manual_seed(0)
    graphs = [Data(x=torch.randn(n, 3), edge_index=random_graph(n, 2 * n, s))
              for s, n in enumerate([3, 5, 8])]
    # a graph without edges settles fastest: make the third one edgeless
    graphs[2].edge_index = torch.empty(2, 0, dtype=torch.long)
    data = Batch.from_data_list(graphs)
    conv = RBPGatedGraphConv(6, num_layers=200, tol=1e-6)
    out = conv(data.x, data.edge_index, batch=data.batch)
    assert out.shape == (16, 6)
    assert conv.stats.converged.shape == (3, )
    assert bool(conv.stats.converged.all())
    assert conv.stats.graph_steps.shape == (3, )
    # each graph's output equals the one it gets on its own
    for i, g in enumerate(graphs):
        alone = conv(g.x, g.edge_index)
        mask = data.batch == i
        torch.testing.assert_close(out[mask], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell", ["contractive", "gru"])
@pytest.mark.parametrize("method", ["neumann", "cg", "fixed_point"])
def test_training_memory_does_not_grow_with_steps(method: str,
                                                  cell: str) -> None:
    """Bytes autograd saves for backward: flat for RBP, linear for BPTT
    (plain iteration: BPTT through Anderson's mixing records its history
    too)."""
    torch.manual_seed(0)
    x = torch.randn(200, 16)
    edge_index = random_graph(200, 800)

    def saved(method: str, steps: int) -> int:
        conv = RBPGatedGraphConv(16, num_layers=steps, tol=0.0,
                                 method=method, cell=cell,
                                 solver="fixed_point")
        with SavedTensorMeter() as meter:
            conv(x, edge_index)
        return meter.bytes

    assert saved(method, 10) == saved(method, 100)
    bptt_10, bptt_100 = saved("bptt", 10), saved("bptt", 100)
    assert 9 < bptt_100 / bptt_10 < 11  # one step's tensors per step
    assert bptt_100 > 50 * saved(method, 100)


def test_sparse_tensors_are_counted_by_their_storage() -> None:
    edge_index = random_graph(100, 300)
    adj = torch.sparse_coo_tensor(edge_index, torch.ones(300),
                                  (100, 100)).coalesce()
    nnz = adj._nnz()
    assert tensor_bytes(adj) == nnz * 4 + 2 * nnz * 8
    csr = adj.to_sparse_csr()
    assert tensor_bytes(csr) == nnz * 4 + 101 * 8 + nnz * 8
    assert tensor_bytes(torch.ones(3, 5)) == 60


def test_empty_isolated_and_single_node(device: torch.device) -> None:
    conv = RBPGatedGraphConv(4, num_layers=50).to(device)
    empty = torch.empty(2, 0, dtype=torch.long, device=device)
    x = torch.randn(3, 2, device=device, requires_grad=True)
    out = conv(x, empty)
    assert out.shape == (3, 4) and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    # isolated node 3 beside a connected pair
    x = torch.randn(4, 2, device=device)
    out = conv(x, torch.tensor([[0, 1], [1, 0]], device=device))
    alone = conv(x[3:], empty)
    # both are the fixed point to within tol=1e-5 (they stop at other steps)
    torch.testing.assert_close(out[3:], alone, atol=1e-4, rtol=1e-4)
    # one node, no edges
    out = conv(torch.randn(1, 4, device=device), empty)
    assert out.shape == (1, 4)
    for aggr in ("mean", "max"):
        conv = RBPGatedGraphConv(4, num_layers=5, aggr=aggr).to(device)
        assert torch.isfinite(conv(torch.randn(2, 4, device=device),
                                   empty)).all()


def test_non_convergence_warns_once_per_call() -> None:
    x, edge_index = _graph(torch.device("cpu"))
    conv = RBPGatedGraphConv(8, num_layers=3, tol=1e-12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = conv(x, edge_index)
    assert len([w for w in caught
                if issubclass(w.category, ConvergenceWarning)]) == 1
    assert conv.stats.converged is False
    assert out.shape == (4, 8)


def test_float64_and_methods_run(device: torch.device) -> None:
    x, edge_index = _graph(device)
    for method in ("neumann", "cg", "fixed_point", "bptt", "tbptt"):
        for solver in ("fixed_point", "anderson"):
            conv = RBPGatedGraphConv(8, num_layers=30, method=method,
                                     solver=solver).double().to(device)
            xd = x.double().requires_grad_()
            conv(xd, edge_index).pow(2).sum().backward()
            assert torch.isfinite(xd.grad).all()
            assert all(torch.isfinite(p.grad).all() for p in conv.parameters())


BAD_CALLS = [
    # (description, kwargs for the call, error, message pattern)
    ("x rank", dict(x=torch.randn(4)), ValueError, r"'x' must have shape"),
    ("x width", dict(x=torch.randn(4, 9)), ValueError,
     r"at most out_channels=8 input channels \(got x with 9\)"),
    ("x dtype", dict(x=torch.ones(4, 3, dtype=torch.long)), TypeError,
     "'x' must have a floating-point dtype"),
    ("x float64", dict(x=torch.randn(4, 3, dtype=torch.float64)), TypeError,
     "'x' must match the parameters' dtype"),
    ("x nan", dict(x=torch.tensor([[float("nan")] * 3] * 4)), ValueError,
     "'x' must be finite"),
    ("edge_index float", dict(edge_index=torch.zeros(2, 3)), TypeError,
     "'edge_index' must have an integer dtype"),
    ("edge_index shape", dict(edge_index=torch.zeros(3, 3, dtype=torch.long)),
     ValueError, r"'edge_index' must have shape \[2, E\] \(got \[3, 3\]\)"),
    ("edge_index range", dict(edge_index=torch.tensor([[0, 4], [1, 0]])),
     ValueError, r"node indices in \[0, 4\) for 4 nodes \(got values in "
     r"\[0, 4\]\)"),
    ("edge_index negative", dict(edge_index=torch.tensor([[0, -1], [1, 0]])),
     ValueError, r"node indices in \[0, 4\)"),
    ("edge_index list", dict(edge_index=[[0, 1], [1, 0]]), TypeError,
     "'edge_index' must be a torch.Tensor"),
    ("edge_weight length", dict(edge_weight=torch.ones(5)), ValueError,
     r"'edge_weight' must have shape \[6\]"),
    ("edge_weight inf", dict(edge_weight=torch.tensor([1.0] * 5 + [
        float("inf")])), ValueError, "'edge_weight' must be finite"),
    ("edge_weight dtype", dict(edge_weight=torch.ones(6, dtype=torch.long)),
     TypeError, "'edge_weight' must have a floating-point dtype"),
    ("sparse size", dict(edge_index=torch.eye(3).to_sparse()), ValueError,
     r"must have shape \[4, 4\]"),
    ("sparse with weights", dict(edge_index=torch.eye(4).to_sparse(),
                                 edge_weight=torch.ones(4)), ValueError,
     "edge_weight=None"),
    ("batch length", dict(batch=torch.zeros(3, dtype=torch.long)), ValueError,
     r"'batch' must have shape \[4\]"),
]


@pytest.mark.parametrize("what, kwargs, err, match", BAD_CALLS,
                         ids=[c[0] for c in BAD_CALLS])
def test_bad_input(what, kwargs, err, match) -> None:
    x, edge_index = _graph(torch.device("cpu"))
    conv = RBPGatedGraphConv(8, num_layers=5)
    before = [p.detach().clone() for p in conv.parameters()]
    call = dict(x=x, edge_index=edge_index, edge_weight=None, batch=None)
    call.update(kwargs)
    with pytest.raises(err, match=match):
        conv(**call)
    # nothing lost: parameters untouched
    assert all(torch.equal(a, b) for a, b in zip(before, conv.parameters()))


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(method="rbp"), ValueError,
     "'method' must be one of 'neumann', 'cg', 'fixed_point', 'bptt', "
     "'tbptt'"),
    (dict(solver="newton"), ValueError,
     "'solver' must be one of 'fixed_point', 'anderson', 'broyden'"),
    (dict(num_layers=0), ValueError, "'num_layers' must be >= 1"),
    (dict(backward_steps=0), ValueError, "'backward_steps' must be >= 1"),
    (dict(tol=-1e-5), ValueError, "'tol' must be a finite number >= 0"),
    (dict(backward_tol=-1.0), ValueError, "'backward_tol' must be"),
    (dict(out_channels=0), ValueError, "'out_channels' must be >= 1"),
])
def test_bad_options(kwargs, err, match) -> None:
    args = dict(out_channels=8)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        RBPGatedGraphConv(**args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 8)
    edge_index = random_graph(50, 200)
    conv = RBPGatedGraphConv(8, num_layers=40, tol=0.0)
    ref = conv(x, edge_index)
    ref.sum().backward()
    ref_grad = conv.weight.grad.clone()
    conv.zero_grad()
    conv = conv.cuda()
    out = conv(x.cuda(), edge_index.cuda())
    out.sum().backward()
    torch.testing.assert_close(out.cpu(), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(conv.weight.grad.cpu(), ref_grad, atol=1e-4,
                               rtol=1e-3)
