"""RBPGGNN's three output models and their loss."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from pyg_rbp.data import parse_babi
from pyg_rbp.models import RBPGGNN, babi_loss

STORY = "1 2 2\n3 2 2\n3 1 4\n? 1 1 4\n? 1 3 4\n\n5 1 6\n? 1 5 6\n"


def _batch(text: str, task: int, k: int) -> Batch:
    return Batch.from_data_list(parse_babi(text, task, k))


def test_node_selection_is_a_distribution_per_graph() -> None:
    b = _batch(STORY, 16, 2)
    model = RBPGGNN(1, 6, "node", num_edge_types=4, num_layers=30)
    out = model(b.x, b.edge_index, b.edge_type, b.batch, b.num_graphs)
    assert out.shape == (b.num_nodes, )
    per_graph = torch.zeros(3).index_add_(0, b.batch, out.exp())
    torch.testing.assert_close(per_graph, torch.ones(3))
    loss, correct = babi_loss(out, b.y, "node", b.ptr)
    # the loss is the mean negative log-probability of each answer node
    answers = b.ptr[:-1] + b.y
    torch.testing.assert_close(loss, -out[answers].mean())
    argmax = [int(out[b.ptr[i]:b.ptr[i + 1]].argmax()) for i in range(3)]
    assert int(correct) == sum(a == int(y) for a, y in zip(argmax, b.y))
    loss.backward()
    assert model.conv.weight.grad is not None
    assert model.stats is not None and model.stats.backward_steps >= 1


def test_a_tie_is_not_a_correct_answer() -> None:
    out = torch.log(torch.full((4, ), 0.5))  # two graphs, 2 nodes, all tied
    ptr = torch.tensor([0, 2, 4])
    _, correct = babi_loss(out, torch.tensor([0, 1]), "node", ptr)
    assert int(correct) == 0


def test_graph_and_path_outputs() -> None:
    b = _batch("1 1 2\n2 1 3\n? 1 1 3 2\n\n1 1 2\n? 1 2 1 1\n", 18, 1)
    model = RBPGGNN(2, 4, "graph", num_classes=2, num_edge_types=2)
    out = model(b.x, b.edge_index, b.edge_type, b.batch, b.num_graphs)
    assert out.shape == (2, 2)
    loss, correct = babi_loss(out, b.y, "graph")
    torch.testing.assert_close(
        loss, torch.nn.functional.cross_entropy(out, b.y))
    p = _batch("1 3 2\n2 1 3\n? 1 1 3 3 1\n", 19, 4)
    model = RBPGGNN(2, 4, "path", num_classes=4, num_edge_types=8)
    out = model(p.x, p.edge_index, p.edge_type, p.batch, p.num_graphs)
    assert out.shape == (1, 2, 4)
    loss, correct = babi_loss(out, p.y, "path")
    want = torch.nn.functional.cross_entropy(out[0], p.y[0])
    torch.testing.assert_close(loss, want)
    right = bool((out[0].argmax(-1) == p.y[0]).all())
    assert int(correct) == int(right)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'output' must be one of"):
        RBPGGNN(1, 4, "sequence")
    with pytest.raises(ValueError, match=r"at least annotation_size=2"):
        RBPGGNN(2, 1, "graph")
    with pytest.raises(ValueError, match=r"not both"):
        RBPGGNN(1, 4, "node", conv=torch.nn.Identity(), num_layers=3)
    model = RBPGGNN(1, 4, "node")
    with pytest.raises(ValueError, match=r"shape \[num_nodes, 1\]"):
        model(torch.zeros(3, 2), torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"needs 'ptr'"):
        babi_loss(torch.zeros(3), torch.zeros(1, dtype=torch.long), "node")
