"""RBPNodeClassifier: its output smoothing against a dense oracle, and the
normalised adjacency built once per call, shared with the layer."""
from __future__ import annotations

import pytest
import torch

from pyg_rbp.models import RBPNodeClassifier

from ..conftest import random_graph


def _dense_gcn(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2, dense, rows are targets."""
    a = torch.zeros(n, n, dtype=torch.float64)
    a.index_put_((edge_index[1], edge_index[0]),
                 torch.ones(edge_index.size(1), dtype=torch.float64),
                 accumulate=True)
    a += torch.eye(n, dtype=torch.float64)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


@pytest.mark.parametrize("normalize", [True, False])
def test_smoothing_is_the_gcn_matrix(normalize: bool) -> None:
    """out = Â^2 (classifier(h*)), whether the matrix comes from the layer
    (normalize=True) or is built by the model."""
    n = 15
    ei = random_graph(n, 50)
    x = torch.randn(n, 4, dtype=torch.float64)
    model = RBPNodeClassifier(4, 8, 3, out_propagation=2, normalize=normalize,
                              num_layers=20).double().eval()
    with torch.no_grad():
        out = model(x, ei)
        h = model.conv(model.encoder(x).relu(), ei)
        expected = _dense_gcn(ei, n).matrix_power(2) @ model.classifier(h)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    assert model.stats is model.conv.stats and model.stats.forward_steps > 0


def test_adjacency_built_once_per_call(monkeypatch) -> None:
    """With normalize=True the layer's matrix is the smoothing matrix: one
    sparse build per forward, not two; gradients still flow through it."""
    builds = {"n": 0}
    real = torch.sparse_coo_tensor

    def counting(*args, **kwargs):
        builds["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "sparse_coo_tensor", counting)
    ei = random_graph(30, 120)
    model = RBPNodeClassifier(5, 8, 3, out_propagation=2, normalize=True,
                              num_layers=15)
    out = model(torch.randn(30, 5), ei)
    assert builds["n"] == 1
    out.logsumexp(-1).sum().backward()
    assert model.encoder.weight.grad.abs().sum() > 0
    builds["n"] = 0
    RBPNodeClassifier(5, 8, 3, out_propagation=2, normalize=False,
                      num_layers=15)(torch.randn(30, 5), ei)
    assert builds["n"] == 2  # the layer's own matrix and the smoothing's


def test_output_dropout_is_its_own_setting() -> None:
    """Dropout before the layer and on its output are separate: with both
    at 0 a training call is deterministic (the layer's output reaches the
    classifier whole, as in APPNP); ``None`` takes ``dropout``."""
    n = 15
    ei = random_graph(n, 50)
    x = torch.randn(n, 4, dtype=torch.float64)
    model = RBPNodeClassifier(4, 8, 3, input_dropout=0.0, dropout=0.0,
                              num_layers=50).double()
    assert model.output_dropout == 0.0
    model.train()
    first, second = model(x, ei), model(x, ei)
    torch.testing.assert_close(first, second, rtol=0, atol=1e-9)
    model.output_dropout = 0.9
    assert not torch.allclose(model(x, ei), first)
    assert RBPNodeClassifier(4, 8, 3, dropout=0.3,
                             output_dropout=None).output_dropout == 0.3
    with pytest.raises(ValueError, match="'output_dropout' must be in"):
        RBPNodeClassifier(4, 8, 3, output_dropout=1.0)
