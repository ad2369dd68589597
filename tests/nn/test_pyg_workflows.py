"""The layer inside PyG's own workflows, against GatedGraphConv or an exact
oracle: copies and pickles after calls, every adjacency format (the
caller's tensor untouched, gradients into its values)."""
from __future__ import annotations

import copy
import io
import math
import pickle
import warnings

import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.nn import GatedGraphConv
from torch_geometric.utils import coalesce

from pyg_rbp import ConvergenceWarning, HopfieldConv, RBPGatedGraphConv
from pyg_rbp.nn import IGNNConv

N = 12


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)


def _graph(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 4, generator=gen, dtype=torch.double)
    edge_index = torch.randint(0, N, (2, 40), generator=gen)
    weight = torch.rand(40, generator=gen, dtype=torch.double)
    return x, edge_index, weight


def _saved_bytes(module: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(module, buf)
    return len(buf.getvalue())


# -- copies and pickles ------------------------------------------------------

@pytest.mark.parametrize("warm_start", [False, True])
def test_deepcopy_and_pickle_after_calls(warm_start: bool) -> None:
    torch.manual_seed(0)
    x, edge_index = torch.randn(300, 16), torch.randint(0, 300, (2, 2400))
    conv = RBPGatedGraphConv(16, num_layers=50, warm_start=warm_start)
    fresh_bytes = _saved_bytes(RBPGatedGraphConv(16, num_layers=50,
                                                 warm_start=warm_start))
    for _ in range(2):
        conv(x, edge_index).sum().backward()
    assert conv.adjacency is not None and conv.stats is not None
    copies = [copy.deepcopy(conv), pickle.loads(pickle.dumps(conv)),
              torch.optim.swa_utils.AveragedModel(conv).module]
    buf = io.BytesIO()
    torch.save(conv, buf)
    buf.seek(0)
    copies.append(torch.load(buf, weights_only=False))
    # the layer keeps its caches; the copies hold none of them
    assert conv.adjacency is not None and conv.stats is not None
    conv.eval()
    with torch.no_grad():
        expected = conv(x, edge_index)
    for other in copies:
        assert other.stats is None and other.adjacency is None
        assert len(other._warm) == 0
        other.eval()
        with torch.no_grad():
            torch.testing.assert_close(other(x, edge_index), expected,
                                       rtol=0, atol=1e-5)
    # a saved layer holds no graph: the size of a fresh one, within the
    # few KB of PyG's inspector cache (the graph's caches were ~1 MB)
    assert _saved_bytes(conv) < fresh_bytes + 32 * 1024


def test_other_layers_copy_without_their_caches() -> None:
    torch.manual_seed(0)
    x, edge_index = torch.randn(30, 6), torch.randint(0, 30, (2, 90))
    ignn = IGNNConv(6, 8, num_layers=100)
    ignn(x, edge_index).sum().backward()
    other = copy.deepcopy(ignn)
    assert other.stats is None and len(other._rho_cache) == 0
    torch.testing.assert_close(other(x, edge_index), ignn(x, edge_index))
    assert "stats" in HopfieldConv.call_caches


# -- adjacency formats -------------------------------------------------------

def _forms(edge_index, weight):
    """Every adjacency form of the same weighted graph (rows = targets)."""
    coo = torch.sparse_coo_tensor(edge_index.flip(0), weight, (N, N))
    return {
        "edge_index": (edge_index, weight),
        "coo (uncoalesced)": (coo, None),
        "csr": (coo.coalesce().to_sparse_csr(), None),
        "EdgeIndex": (EdgeIndex(edge_index, sparse_size=(N, N)), weight),
    }


@pytest.mark.parametrize("aggr", ["add", "mean", "max"])
def test_every_format_gives_the_same_output_and_gradients(aggr: str) -> None:
    x, edge_index, weight = _graph()
    # duplicates are summed, as PyG reads a sparse adjacency: the oracle is
    # the coalesced edge list
    ei_c, w_c = coalesce(edge_index, weight, N, reduce="sum")
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(4, num_layers=300, tol=1e-12, aggr=aggr,
                             method="bptt").double()

    def run(adj, w):
        x_ = x.clone().requires_grad_(True)
        out = conv(x_, adj, w)
        out.pow(2).sum().backward()
        return out.detach(), x_.grad

    ref_out, ref_grad = run(ei_c, w_c)
    for name, (adj, w) in _forms(ei_c, w_c).items():
        out, grad = run(adj, w)
        torch.testing.assert_close(out, ref_out, msg=name)
        torch.testing.assert_close(grad, ref_grad, msg=name)
    if aggr != "max":  # with duplicates: the uncoalesced COO sums them
        coo = torch.sparse_coo_tensor(edge_index.flip(0), weight, (N, N))
        out, _ = run(coo, None)
        torch.testing.assert_close(out, ref_out)


def test_gradient_into_sparse_values_equals_edge_weight_gradient() -> None:
    x, edge_index, weight = _graph(1)
    ei_c, w_c = coalesce(edge_index, weight, N, reduce="sum")
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(4, num_layers=300, tol=1e-12).double()
    w_ref = w_c.clone().requires_grad_(True)
    conv(x, ei_c, w_ref).pow(2).sum().backward()
    values = w_c.clone().requires_grad_(True)
    coo = torch.sparse_coo_tensor(ei_c.flip(0), values, (N, N))
    conv(x, coo).pow(2).sum().backward()
    torch.testing.assert_close(values.grad, w_ref.grad)
    # CSR values too
    csr_values = w_c.clone().requires_grad_(True)
    csr = torch.sparse_coo_tensor(ei_c.flip(0), csr_values, (N, N)) \
        .coalesce().to_sparse_csr()
    conv(x, csr).pow(2).sum().backward()
    torch.testing.assert_close(csr_values.grad, w_ref.grad)


def test_the_callers_uncoalesced_tensor_is_left_as_it_was() -> None:
    x, _, _ = _graph()
    index = torch.tensor([[1, 1, 0], [0, 0, 2]])
    values = torch.tensor([1.0, 2.0, 3.0], dtype=torch.double)
    adj = torch.sparse_coo_tensor(index, values, (N, N))
    before = (adj._indices().clone(), adj._values().clone())
    conv = RBPGatedGraphConv(4, num_layers=10).double()
    conv(x, adj)
    assert not adj.is_coalesced()
    assert torch.equal(adj._indices(), before[0])
    assert torch.equal(adj._values(), before[1])
    # and the caller's coalesced view still sums the duplicates
    assert float(adj.coalesce().to_dense()[1, 0]) == 3.0


def test_same_as_gated_graph_conv_reads_a_sparse_adjacency() -> None:
    """PyG's layer reads an uncoalesced COO adjacency with duplicates summed;
    so does ours (checked on PyG's own layer here, the oracle above)."""
    x, edge_index, weight = _graph(2)
    ei_c, w_c = coalesce(edge_index, weight, N, reduce="sum")
    coo = torch.sparse_coo_tensor(edge_index.flip(0), weight, (N, N))
    theirs = GatedGraphConv(4, 3, aggr="mean").double()
    torch.testing.assert_close(theirs(x, coo), theirs(x, ei_c, w_c))


# -- explainability ----------------------------------------------------------

def _masked(conv, x, edge_index, mask, **kw):
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
    set_masks(conv, mask, edge_index, apply_sigmoid=False)
    try:
        return conv(x, edge_index, **kw)
    finally:
        clear_masks(conv)


def _layer_weights(conv, edge_index) -> torch.Tensor:
    """The weights the layer gives an unweighted graph's messages: ones for
    the GRU step; the non-expansive weights for the contractive step (with
    'add', a node of in-degree d > 1 takes 1/d of each message)."""
    from pyg_rbp.nn.adjacency import nonexpansive_weights
    ones = torch.ones(edge_index.size(1), dtype=torch.double)
    if conv.cell == "gru":
        return ones
    return nonexpansive_weights(edge_index, None, N, conv.aggr, False,
                                torch.double)[1]


@pytest.mark.parametrize("cell", ["contractive", "gru"])
@pytest.mark.parametrize("aggr", ["add", "mean", "max"])
def test_a_fractional_edge_mask_acts_as_edge_weights(aggr: str,
                                                     cell: str) -> None:
    """The mask multiplies each message the layer computes, as
    MessagePassing does (GCNConv: after normalisation): the GRU step's
    plain messages, the contractive step's non-expansive ones."""
    x, edge_index, weight = _graph(3)
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(4, num_layers=300, tol=1e-12, aggr=aggr,
                             cell=cell).double()
    masked = _masked(conv, x, edge_index, weight)
    expected = conv(x, edge_index, _layer_weights(conv, edge_index) * weight)
    torch.testing.assert_close(masked, expected)
    # and it is not ignored (the fast path once skipped the hook)
    assert not torch.allclose(masked, conv(x, edge_index))


@pytest.mark.parametrize("cell", ["contractive", "gru"])
def test_a_zero_edge_mask_silences_the_edges(cell: str) -> None:
    """A zero mask drops the edges' messages: for the GRU step the same as
    removing them; the contractive step, like GCNConv, keeps the other
    messages' normalisation (a removed edge would change it)."""
    x, edge_index, _ = _graph(4)
    keep = torch.arange(edge_index.size(1)) % 3 != 0
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(4, num_layers=300, tol=1e-12,
                             cell=cell).double()
    masked = _masked(conv, x, edge_index, keep.double())
    weights = _layer_weights(conv, edge_index)
    torch.testing.assert_close(masked, conv(x, edge_index[:, keep],
                                            weights[keep]))
    if cell == "gru":
        torch.testing.assert_close(masked, conv(x, edge_index[:, keep]))
    # typed edges: the same
    edge_type = torch.arange(edge_index.size(1)) % 2
    typed = RBPGatedGraphConv(4, num_layers=300, tol=1e-12, cell=cell,
                              num_edge_types=2).double()
    masked = _masked(typed, x, edge_index, keep.double(),
                     edge_type=edge_type)
    torch.testing.assert_close(
        masked, typed(x, edge_index[:, keep], weights[keep],
                      edge_type=edge_type[keep]))


def test_edge_mask_with_normalize_scales_the_normalised_messages() -> None:
    """As in MessagePassing (GCNConv): the mask multiplies each message
    after normalisation, the self-loops the layer adds unmasked."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    x, edge_index, weight = _graph(5)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    mask = weight[:edge_index.size(1)]
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(4, num_layers=300, tol=1e-12,
                             normalize=True).double()
    torch.manual_seed(0)
    plain = RBPGatedGraphConv(4, num_layers=300, tol=1e-12).double()
    plain.load_state_dict(conv.state_dict())
    index, norm = gcn_norm(edge_index, None, N, add_self_loops=True,
                           dtype=torch.double)
    norm = norm * torch.cat([mask, torch.ones(N, dtype=torch.double)])
    torch.testing.assert_close(_masked(conv, x, edge_index, mask),
                               plain(x, index, norm))


def test_gnn_explainer_runs_end_to_end_like_on_gated_graph_conv() -> None:
    from torch_geometric.explain import Explainer, GNNExplainer
    torch.manual_seed(0)
    x, edge_index = torch.randn(30, 8), torch.randint(0, 30, (2, 90))

    class Net(torch.nn.Module):
        def __init__(self, conv: torch.nn.Module) -> None:
            super().__init__()
            self.conv, self.lin = conv, torch.nn.Linear(8, 3)

        def forward(self, x, edge_index):
            return self.lin(self.conv(x, edge_index))

    for conv in (GatedGraphConv(8, 3), RBPGatedGraphConv(8, num_layers=30)):
        model = Net(conv)
        explainer = Explainer(
            model, GNNExplainer(epochs=10), explanation_type="model",
            edge_mask_type="object", model_config=dict(
                mode="multiclass_classification", task_level="node",
                return_type="raw"))
        explanation = explainer(x, edge_index, index=3)
        mask = explanation.edge_mask
        assert mask.shape == (90, ) and float(mask.max()) > 0
        # edges outside the node's receptive field get no mask: for ours
        # (a fixed point sees the whole component) some edges still do
        zero = explainer.get_masked_prediction(
            x, edge_index, edge_mask=torch.zeros(90))
        assert not torch.allclose(zero, model(x, edge_index))


def test_pg_explainer_trains_and_explains() -> None:
    from torch_geometric.explain import Explainer, PGExplainer
    torch.manual_seed(0)
    x, edge_index = torch.randn(30, 8), torch.randint(0, 30, (2, 90))
    y = torch.randint(0, 3, (30, ))
    conv = RBPGatedGraphConv(8, num_layers=30)
    model = torch.nn.ModuleDict({"conv": conv, "lin": torch.nn.Linear(8, 3)})

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, x, edge_index):
            return self.m["lin"](self.m["conv"](x, edge_index))

    net = Net()
    explainer = Explainer(
        net, PGExplainer(epochs=3, lr=0.003), explanation_type="phenomenon",
        edge_mask_type="object", model_config=dict(
            mode="multiclass_classification", task_level="node",
            return_type="raw"))
    losses = [explainer.algorithm.train(epoch, net, x, edge_index, target=y,
                                        index=3) for epoch in range(3)]
    assert all(math.isfinite(loss) for loss in losses)
    mask = explainer(x, edge_index, target=y, index=3).edge_mask
    assert mask.shape == (90, ) and float(mask.max()) > 0


# -- torch.compile -----------------------------------------------------------

class _Model(torch.nn.Module):
    def __init__(self, **conv_kwargs) -> None:
        super().__init__()
        self.enc = torch.nn.Linear(8, 8)
        self.conv = RBPGatedGraphConv(8, **conv_kwargs)
        self.lin = torch.nn.Linear(8, 3)

    def forward(self, x, edge_index):
        return self.lin(self.conv(self.enc(x).relu(), edge_index))


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [
    dict(num_layers=300),                                  # converged
    dict(num_layers=3, tol=1e-12),                         # hybrid unrolls
    dict(num_layers=3, tol=1e-12, method="neumann",
         cell="gru"),                                      # safeguard acts
    dict(num_layers=300, jacobian_penalty="spectral"),     # create_graph
], ids=["converged", "unrolled", "safeguard", "penalty"])
def test_compiled_training_gives_eagers_gradients(kwargs) -> None:
    torch.manual_seed(0)
    x, edge_index = torch.randn(40, 8), torch.randint(0, 40, (2, 120))
    y = torch.randint(0, 3, (40, ))
    model = _Model(**kwargs)

    def grads(fn):
        model.zero_grad()
        torch.manual_seed(1)  # the safeguard's power iteration start
        out = fn(x, edge_index)
        loss = torch.nn.functional.cross_entropy(out, y)
        if model.conv.stats.jacobian_penalty is not None:
            loss = loss + model.conv.stats.jacobian_penalty
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    eager = grads(model)
    compiled = grads(torch.compile(model))
    if kwargs.get("method") == "neumann":
        assert model.conv.stats.contraction_penalty is not None
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compile_breaks_once_per_layer_and_fullgraph_says_why() -> None:
    import torch._dynamo
    torch.manual_seed(0)
    x, edge_index = torch.randn(20, 8), torch.randint(0, 20, (2, 60))
    model = _Model(num_layers=100)
    explained = torch._dynamo.explain(model)(x, edge_index)
    assert explained.graph_count == 2 and explained.graph_break_count == 1
    with pytest.raises(Exception, match="iterate to a data-dependent fixed"):
        torch.compile(model, fullgraph=True)(x, edge_index)


# -- model builders and loaders ---------------------------------------------

def test_to_hetero_with_one_relation_equals_the_homogeneous_model() -> None:
    from torch_geometric.nn import to_hetero
    torch.manual_seed(0)
    x, edge_index = torch.randn(20, 8), torch.randint(0, 20, (2, 60))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = RBPGatedGraphConv(8, num_layers=300, tol=1e-10)
            self.lin = torch.nn.Linear(8, 3)

        def forward(self, x, edge_index):
            return self.lin(self.conv(x, edge_index).relu())

    model = Net()
    model(x, edge_index)  # a call first: the copy must not carry its caches
    meta = (["paper"], [("paper", "cites", "paper")])
    hetero = to_hetero(copy.deepcopy(model), meta, aggr="sum")
    out = hetero({"paper": x}, {("paper", "cites", "paper"): edge_index})
    torch.testing.assert_close(out["paper"], model(x, edge_index),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sequential_and_basic_gnn_with_jumping_knowledge() -> None:
    from torch_geometric.nn import Sequential
    from torch_geometric.nn.models.basic_gnn import BasicGNN
    torch.manual_seed(0)
    x, edge_index = torch.randn(20, 8), torch.randint(0, 20, (2, 60))
    conv = RBPGatedGraphConv(16, num_layers=300, tol=1e-10)
    lin = torch.nn.Linear(16, 3)
    seq = Sequential("x, edge_index", [(conv, "x, edge_index -> x"),
                                       torch.nn.ReLU(), lin])
    torch.testing.assert_close(seq(x, edge_index),
                               lin(conv(x, edge_index).relu()),
                               rtol=1e-4, atol=1e-5)

    class RBPGNN(BasicGNN):
        supports_edge_weight = True
        supports_edge_attr = False
        supports_norm_batch = False

        def init_conv(self, in_channels, out_channels, **kwargs):
            return RBPGatedGraphConv(out_channels, num_layers=100, **kwargs)

    gnn = RBPGNN(8, 16, num_layers=2, out_channels=3, jk="cat")
    out = gnn(x, edge_index)
    assert out.shape == (20, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in gnn.convs.parameters())


def test_dataloader_batches_equal_the_graphs_one_by_one() -> None:
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader
    torch.manual_seed(0)
    graphs = []
    for n in (5, 9, 7, 12):
        graphs.append(Data(x=torch.randn(n, 4, dtype=torch.double),
                           edge_index=torch.randint(0, n, (2, 2 * n))))
    conv = RBPGatedGraphConv(4, num_layers=500, tol=1e-12).double()
    batch = next(iter(DataLoader(graphs, batch_size=4)))
    out = conv(batch.x, batch.edge_index, batch=batch.batch)
    assert bool(conv.stats.converged.all())
    for i, g in enumerate(graphs):
        torch.testing.assert_close(out[batch.batch == i],
                                   conv(g.x, g.edge_index),
                                   rtol=1e-8, atol=1e-9)
